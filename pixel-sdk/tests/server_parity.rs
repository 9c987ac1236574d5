//! The pixel must agree with the server byte for byte: same event IDs, same click IDs.

use clickstamp_pixel::{build_payload, event_id, find_click_id, normalize_click_id};
use clickstamp_plugins::{dedup_key, ClickIdCodec, ClickIdError};

const NOW: u64 = 1_790_000_000_000;

fn minted(n: u8) -> String {
    ClickIdCodec::new(b"server-secret-key-for-tests")
        .mint(
            NOW + u64::from(n),
            [n, n ^ 0x5a, n.wrapping_mul(7), 1, 2, n],
        )
        .to_string()
}

#[test]
fn event_id_equals_the_servers_dedup_key() {
    let cases: [(&str, Option<&str>); 7] = [
        ("purchase", Some("T1")),
        ("purchase", None),
        ("", None),
        ("conversion", Some("")),
        ("Lead", Some(" ord-42 ")),
        ("sign_up.v2", Some("Ä€x")),
        ("deposit-1", Some("t")),
    ];
    for n in 0..20u8 {
        let cid = minted(n);
        let hyph = format!(
            "{}-{}-{}-{}-{}",
            &cid[0..8],
            &cid[8..12],
            &cid[12..16],
            &cid[16..20],
            &cid[20..32]
        )
        .to_uppercase();
        for (event, txid) in cases {
            let server = dedup_key(&cid, event, txid);
            assert_eq!(event_id(&cid, event, txid), server);
            assert_eq!(event_id(&hyph, event, txid), server);
            let body = build_payload(&hyph, event, txid, None, None, None).unwrap();
            assert!(
                body.contains(&format!("\"event_id\":\"{server}\"")),
                "{body}"
            );
        }
    }
}

#[test]
fn every_id_the_server_mints_is_found_and_kept_verifiable() {
    let codec = ClickIdCodec::new(b"server-secret-key-for-tests");
    for n in 0..50u8 {
        let cid = minted(n);
        let found = find_click_id(&format!("?cs_cid={cid}"), "", None).unwrap();
        assert_eq!(found, cid);
        assert!(codec.verify(&found, NOW + 1_000, 86_400_000).is_ok());
        let from_cookie = find_click_id("", &format!("a=b; cs_summer={cid}"), None);
        assert_eq!(from_cookie.as_deref(), Some(cid.as_str()));
    }
}

#[test]
fn shape_check_agrees_with_the_servers_parser_on_mutations() {
    // Flip every character of a real ID to every hex digit and a few non-hex ones: the
    // pixel accepts exactly what the server rejects only for its MAC (or accepts).
    let codec = ClickIdCodec::new(b"server-secret-key-for-tests");
    let cid = minted(9);
    for i in 0..cid.len() {
        for c in "0123456789abcdefABCDEFgz-".chars() {
            let mut s: Vec<char> = cid.chars().collect();
            s[i] = c;
            let s: String = s.into_iter().collect();
            let server_shape_ok = matches!(
                codec.verify(&s, NOW, u64::MAX),
                Ok(_) | Err(ClickIdError::BadMac)
            );
            assert_eq!(normalize_click_id(&s).is_some(), server_shape_ok, "{s}");
        }
    }
}
