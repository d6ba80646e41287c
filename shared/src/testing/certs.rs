//! Throw-away certificate authority for TLS tests, made with the `openssl` CLI: a CA, a
//! server certificate (SAN `localhost`, `127.0.0.1`) and a client certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::HarnessError;

/// PEM files of a throw-away CA (all in one directory).
#[derive(Clone, Debug)]
pub struct TestCerts {
    /// CA certificate.
    pub ca: PathBuf,
    /// Server key + certificate in one PEM file (ZooKeeper `ssl.keyStore.location`).
    pub server_keystore: PathBuf,
    /// Client certificate.
    pub client_cert: PathBuf,
    /// Client private key (PKCS#8).
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), HarnessError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| HarnessError::new(format!("cannot run openssl (is it installed?): {e}")))?;
    if !out.status.success() {
        return Err(HarnessError::new(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

impl TestCerts {
    /// Generates a CA, a server and a client certificate in `dir` (valid 30 days).
    pub fn generate(dir: &Path) -> Result<TestCerts, HarnessError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| HarnessError::new(format!("create {}: {e}", dir.display())))?;
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=nodepool-test-ca",
            ],
        )?;
        let ext = "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                   keyUsage=digitalSignature,keyEncipherment\n\
                   extendedKeyUsage=serverAuth,clientAuth\n";
        std::fs::write(dir.join("leaf.ext"), ext)
            .map_err(|e| HarnessError::new(format!("write leaf.ext: {e}")))?;
        for name in ["server", "client"] {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let pem = format!("{name}.pem");
            let subj = format!("/CN=nodepool-test-{name}");
            openssl(
                dir,
                &[
                    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                    &subj,
                ],
            )?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "30",
                    "-extfile",
                    "leaf.ext",
                ],
            )?;
        }
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map_err(|e| HarnessError::new(format!("read {f}: {e}")))
        };
        let keystore = format!("{}{}", read("server.key")?, read("server.pem")?);
        std::fs::write(dir.join("server-keystore.pem"), keystore)
            .map_err(|e| HarnessError::new(format!("write keystore: {e}")))?;
        Ok(TestCerts {
            ca: dir.join("ca.pem"),
            server_keystore: dir.join("server-keystore.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        })
    }
}
