//! The shipped production example (`config/production.example.toml`) passes
//! `clickstamp check` once the variables it names are set and its certificate files
//! exist, as shipped and with its commented PostgreSQL and analytics sections on.

use clickstamp_e2e::instance::workspace_root;
use clickstamp_e2e::{binary, require_program, TempDir};
use std::path::Path;
use std::process::Command;

/// The variables the example's header names, with values of the right shape.
const ENV: &[(&str, &str)] = &[
    (
        "CLICKSTAMP_CLICK_ID_KEY",
        "0123456789abcdef0123456789abcdef",
    ),
    ("CLICKSTAMP_ADMIN_TOKEN", "an-admin-token-of-some-length"),
    ("CLICKSTAMP_CAKE_SECRET", "a-postback-secret"),
    (
        "CLICKSTAMP_DATABASE_URL",
        "postgres://clickstamp:pw@127.0.0.1:5432/clickstamp?sslmode=disable",
    ),
    ("CLICKSTAMP_CLICKHOUSE_USER", "clickstamp"),
    ("CLICKSTAMP_CLICKHOUSE_PASSWORD", "pw"),
];

fn example() -> String {
    std::fs::read_to_string(workspace_root().join("config/production.example.toml"))
        .expect("config/production.example.toml")
}

/// The example in a fresh directory beside a self-signed certificate at the paths its
/// `[[tls.certificates]]` name; `None` when openssl is missing (outside CI).
fn install(config: &str) -> Option<(TempDir, std::path::PathBuf)> {
    let openssl = require_program("openssl")?;
    let dir = TempDir::new("production-example");
    std::fs::create_dir_all(dir.0.join("certs")).unwrap();
    let out = Command::new(openssl)
        .current_dir(&dir.0)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lp.example.com",
            "-keyout",
            "certs/lp.example.com.key",
            "-out",
            "certs/lp.example.com.pem",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.0.join("clickstamp.toml");
    std::fs::write(&path, config).unwrap();
    Some((dir, path))
}

fn check(path: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(binary());
    cmd.args(["check", "--config"]).arg(path);
    for (name, _) in ENV {
        cmd.env_remove(name);
    }
    let out = cmd.envs(env.iter().copied()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// Uncomment the commented block that starts with the line `# {first}`: every `# `
/// line up to the next blank line.
fn uncomment_block(config: &str, first: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in config.lines() {
        if line == format!("# {first}") {
            inside = true;
        }
        if line.trim().is_empty() {
            inside = false;
        }
        match line.strip_prefix("# ") {
            Some(code) if inside => out.push_str(code),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_production_example_passes_check_with_its_variables_set() {
    let Some((_dir, path)) = install(&example()) else {
        return;
    };
    let (ok, out) = check(&path, ENV);
    assert!(ok, "{out}");
    assert!(out.contains("ok (1 campaigns"), "{out}");

    // Without them, each missing variable is named under the key that names it.
    let (ok, out) = check(&path, &[]);
    assert!(!ok);
    for (key, variable) in [
        ("secrets.click_id_key_env", "CLICKSTAMP_CLICK_ID_KEY"),
        ("secrets.admin_token_env", "CLICKSTAMP_ADMIN_TOKEN"),
        ("networks[0].secret_env", "CLICKSTAMP_CAKE_SECRET"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{key}:")) && l.contains(variable)),
            "{key} / {variable} in:\n{out}"
        );
    }
}

#[test]
fn the_production_example_passes_check_on_postgresql_with_analytics() {
    let example = example();
    // The SQLite [store] gives way to the commented PostgreSQL one.
    let sqlite_store = example
        .split_once("[store]\n")
        .and_then(|(_, rest)| rest.split_once("\n\n"))
        .map(|(block, _)| format!("[store]\n{block}\n\n"))
        .expect("a [store] section");
    let config = example.replacen(&sqlite_store, "", 1);
    let config = uncomment_block(&config, "[store]");
    let config = uncomment_block(&config, "[analytics]");
    assert!(
        config.contains("\nbackend = \"postgres\"") && config.contains("\n[analytics]"),
        "{config}"
    );
    let Some((_dir, path)) = install(&config) else {
        return;
    };
    let (ok, out) = check(&path, ENV);
    assert!(ok, "{out}");
}
