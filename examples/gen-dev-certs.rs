//! Regenerates the development certificates in `certs-dev/`:
//!
//! ```text
//! cargo run --example gen-dev-certs
//! ```
//!
//! Writes a development CA (`ca.pem`) and a server certificate for `localhost`, `127.0.0.1`
//! and `::1` signed by it (`server.pem`, chain leaf first; `server-key.pem`). The CA's private
//! key is deliberately not written anywhere: nobody can mint further certificates that chain
//! to a committed CA. These files are for development and tests only — never deploy them.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-dev");
    std::fs::create_dir_all(&out)?;

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "arcgate DEVELOPMENT CA (do not trust)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Ten years: long enough that committed dev certificates do not expire under the tests.
    ca.not_before = date_time_ymd(2026, 1, 1);
    ca.not_after = date_time_ymd(2036, 1, 1);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "arcgate development server");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = date_time_ymd(2026, 1, 1);
    leaf.not_after = date_time_ymd(2036, 1, 1);
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    std::fs::write(out.join("ca.pem"), ca_cert.pem())?;
    std::fs::write(
        out.join("server.pem"),
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
    )?;
    std::fs::write(out.join("server-key.pem"), leaf_key.serialize_pem())?;
    println!(
        "wrote {}/{{ca.pem,server.pem,server-key.pem}}",
        out.display()
    );
    Ok(())
}
