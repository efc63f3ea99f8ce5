//! A certificate authority of a test's own, for the HTTPS listeners' tests.

/// What a certificate may be used for.
#[derive(Clone, Copy)]
pub enum Usage {
    Server,
    Client,
    /// A node's: it serves and it calls its peers.
    Both,
}

/// A CA of the test's own and a certificate it signs (for a server with SANs, or a client).
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// Signs a certificate for `names`, writing `<stem>.pem` and `<stem>-key.pem` in `dir`.
    pub fn issue(
        &self,
        dir: &std::path::Path,
        stem: &str,
        names: &[&str],
        usage: Usage,
    ) -> [String; 2] {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, stem);
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        params.extended_key_usages = match usage {
            Usage::Server => vec![ServerAuth],
            Usage::Client => vec![ClientAuth],
            Usage::Both => vec![ServerAuth, ClientAuth],
        };
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        [cert_path, key_path].map(|path| path.to_str().unwrap().to_owned())
    }

    pub fn write(&self, dir: &std::path::Path, stem: &str) -> String {
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, self.cert.pem()).unwrap();
        path.to_str().unwrap().to_owned()
    }
}
