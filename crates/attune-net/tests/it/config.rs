//! The config file's shape: the README's example is what the code reads.

use attune_net::{Net, NetConfig};

/// The ```toml block of the README's "Corporate networks" section.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("## Corporate networks").nth(1).expect("README has a Corporate networks section");
    let block = section.split("```toml").nth(1).expect("the section has a toml example");
    block.split("```").next().unwrap().to_string()
}

#[test]
fn the_readme_example_is_a_valid_config() {
    let c: NetConfig = toml::from_str(&readme_example()).unwrap();
    assert!(!c.tls.ca_files.is_empty());
    assert!(c.proxy.is_some() && c.no_proxy.is_some());
    assert!(c.tls.hosts.values().any(|h| h.client_cert.is_some() && h.client_key.is_some()));
    let kinds = |f: fn(&attune_net::config::CredentialConfig) -> bool| c.credentials.values().any(f);
    assert!(kinds(|c| c.token_env.is_some()) && kinds(|c| c.token_file.is_some()) && kinds(|c| c.user.is_some()));
}

#[test]
fn an_unknown_key_is_refused() {
    let err = toml::from_str::<NetConfig>("[tls]\nca_file = \"/x\"\n").unwrap_err().to_string();
    assert!(err.contains("ca_file"), "{err}");
}

#[test]
fn a_host_key_that_is_not_a_host_is_refused() {
    let c: NetConfig = toml::from_str("netrc = \"\"\n[credentials.\"https://h.example/\"]\ntoken = \"t\"\n").unwrap();
    let err = Net::build(&c).unwrap_err().to_string();
    assert!(err.contains("not a host or host:port"), "{err}");
}
