//! A MaxMind DB (`.mmdb`) writer just big enough for tests: IPv4 networks mapped to a
//! country (and optionally a region), in the layout GeoLite2 and DB-IP Lite use. The
//! maintained Rust crates for this format only read it, so the tests write their own
//! small database rather than ship a binary fixture of unknown provenance.
//!
//! The format (MaxMind DB 2.0): a binary search tree over the address bits, 24-bit
//! records; 16 zero bytes; a data section of typed values; a marker and a metadata map.

use std::net::Ipv4Addr;

/// A record of the tree: another node, nothing, or data at an offset.
#[derive(Clone, Copy)]
enum Record {
    Node(usize),
    Empty,
    Data(usize),
}

fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    assert!(size < 29, "tiny values only");
    if kind <= 7 {
        out.push((kind << 5) | size as u8);
    } else {
        // Extended types: type 0 in the control byte, `kind - 7` in the next.
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    control(2, s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

/// An unsigned integer of type `kind` (5: uint16, 6: uint32, 9: uint64), big-endian
/// with leading zero bytes left out.
fn uint(kind: u8, value: u64, out: &mut Vec<u8>) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(kind, 8 - skip, out);
    out.extend_from_slice(&bytes[skip..]);
}

fn map_header(entries: usize, out: &mut Vec<u8>) {
    control(7, entries, out);
}

/// `{"iso_code": code}`
fn iso(code: &str, out: &mut Vec<u8>) {
    map_header(1, out);
    string("iso_code", out);
    string(code, out);
}

/// A database mapping each `(network, prefix length, country, region)` to a
/// GeoLite2-style record; addresses in none of them are not found.
pub fn country_database(networks: &[(&str, u8, &str, Option<&str>)]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty, Record::Empty]];
    for (network, len, country, region) in networks {
        let offset = data.len();
        map_header(if region.is_some() { 2 } else { 1 }, &mut data);
        string("country", &mut data);
        iso(country, &mut data);
        if let Some(region) = region {
            string("subdivisions", &mut data);
            control(11, 1, &mut data);
            iso(region, &mut data);
        }
        let bits = u32::from(network.parse::<Ipv4Addr>().expect("an IPv4 network"));
        let mut node = 0;
        for depth in 0..*len {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *len {
                nodes[node][bit] = Record::Data(offset);
                break;
            }
            node = match nodes[node][bit] {
                Record::Node(next) => next,
                _ => {
                    nodes.push([Record::Empty, Record::Empty]);
                    let next = nodes.len() - 1;
                    nodes[node][bit] = Record::Node(next);
                    next
                }
            };
        }
    }
    let node_count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for record in node {
            let value = match *record {
                Record::Node(n) => n,
                Record::Empty => node_count,
                Record::Data(offset) => node_count + 16 + offset,
            };
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    map_header(9, &mut out);
    string("binary_format_major_version", &mut out);
    uint(5, 2, &mut out);
    string("binary_format_minor_version", &mut out);
    uint(5, 0, &mut out);
    string("build_epoch", &mut out);
    uint(9, 1_700_000_000, &mut out);
    string("database_type", &mut out);
    string("clickstamp-test-Country", &mut out);
    string("description", &mut out);
    map_header(1, &mut out);
    string("en", &mut out);
    string("clickstamp e2e", &mut out);
    string("ip_version", &mut out);
    uint(5, 4, &mut out);
    string("languages", &mut out);
    control(11, 1, &mut out);
    string("en", &mut out);
    string("node_count", &mut out);
    uint(6, node_count as u64, &mut out);
    string("record_size", &mut out);
    uint(5, 24, &mut out);
    out
}
