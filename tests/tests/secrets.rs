//! Secrets never reach logs or error messages: with a capture of every `tracing` event and
//! its span fields at TRACE level (ours and the HTTP stack's, `testing::LogCapture`), the
//! OpenStack driver authenticates against the simulator (password and application
//! credential), re-authenticates after a 401, fails with a wrong password, and does
//! ordinary calls; neither the password, the application-credential secret nor any token
//! issued appears in the captured output, in `Debug` of the clouds.yaml entry and driver,
//! or in error messages.
//!
//! The tokens are learnt by routing only the Keystone request through a tiny loopback TCP
//! relay that records the `X-Subject-Token` reply headers (the catalog sends every other
//! call straight to the simulator).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodepool_shared::cloud::{CloudDriver, CloudError, CloudsFile, DriverOptions, OpenStackDriver};
use nodepool_shared::testing::LogCapture;
use nodepool_tests::sim::{
    clouds_yaml_text, CloudsAuth, Credentials, SimConfig, SimHandle, Simulator,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "pw-9c41e7d2-do-not-log";
const APP_SECRET: &str = "acs-5b07f3aa-do-not-log";

/// A loopback TCP relay to `target` that records everything the server sent back.
async fn relay(target: std::net::SocketAddr) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let replies = Arc::new(Mutex::new(Vec::new()));
    let rec = replies.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                rec.lock().unwrap().extend_from_slice(&buf[..n]);
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, replies)
}

/// The `X-Subject-Token` values in recorded HTTP replies.
fn subject_tokens(replies: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(replies)
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-subject-token")
                .then(|| value.trim().to_string())
        })
        .collect()
}

fn options() -> DriverOptions {
    let mut o = DriverOptions::new("prov");
    o.rate = 0.0;
    o.api_timeout = Duration::from_secs(10);
    o
}

fn driver(sim: &SimHandle, relay_port: u16, auth: CloudsAuth, password: &str) -> OpenStackDriver {
    let auth_url = format!("http://127.0.0.1:{relay_port}/identity");
    let yaml = clouds_yaml_text(sim.config(), &auth_url, "sim", auth).replace(PASSWORD, password);
    let file = CloudsFile::parse(&yaml, Path::new("clouds.yaml")).unwrap();
    let cloud = file.cloud("sim").unwrap();
    for shown in [format!("{cloud:?}"), format!("{file:?}")] {
        assert!(
            !shown.contains(password) && !shown.contains(APP_SECRET),
            "Debug shows a secret: {shown}"
        );
    }
    OpenStackDriver::new(cloud, options()).unwrap()
}

#[tokio::test]
async fn no_password_or_token_in_logs_debug_or_errors() {
    // Every event at TRACE level from here on (ours and the HTTP stack's).
    let logs = LogCapture::start();
    let config = SimConfig {
        credentials: Credentials {
            password: PASSWORD.into(),
            app_credential_secret: APP_SECRET.into(),
            ..Credentials::default()
        },
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await.unwrap();
    let admin = sim.admin();
    let (port, replies) = relay(sim.addr()).await;
    let mut errors = Vec::new();

    tokio::time::timeout(Duration::from_secs(60), async {
        for auth in [CloudsAuth::Password, CloudsAuth::ApplicationCredential] {
            let d = driver(&sim, port, auth, PASSWORD);
            d.authenticate().await.unwrap();
            d.list_servers().await.unwrap();
            d.list_flavors().await.unwrap();
            d.compute_limits().await.unwrap();
            // An expired/revoked token: the driver re-authenticates (a second token).
            admin.fail_next("compute.servers.detail", 1, 401);
            match d.list_servers().await {
                Ok(_) => {}
                Err(e) => errors.push(format!("{e} / {e:?}")),
            }
            d.list_servers().await.unwrap();
            errors.push(format!("{d:?}"));
        }
        // A wrong password: an auth error.
        let d = driver(&sim, port, CloudsAuth::Password, "wrong-pw-3e8d-do-not-log");
        let e = d.list_servers().await.unwrap_err();
        assert!(matches!(e, CloudError::Auth { .. }), "{e:?}");
        errors.push(format!("{e} / {e:?} / {d:?}"));
    })
    .await
    .expect("bounded");

    let tokens = subject_tokens(&replies.lock().unwrap());
    assert!(
        tokens.len() >= 4,
        "expected 4 issued tokens (2 auth types, each re-authenticated once), saw {tokens:?}"
    );
    let logs = logs.text();
    assert!(
        logs.contains("DEBUG") || logs.contains("TRACE") || logs.contains("INFO"),
        "the subscriber captured nothing; the test would prove nothing"
    );
    let mut secrets: Vec<String> = vec![
        PASSWORD.into(),
        APP_SECRET.into(),
        "wrong-pw-3e8d-do-not-log".into(),
    ];
    secrets.extend(tokens);
    for s in &secrets {
        if let Some(at) = logs.find(s.as_str()) {
            let from = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let to = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!("a secret is in the logs:\n{}", &logs[from..to]);
        }
        for e in &errors {
            assert!(
                !e.contains(s.as_str()),
                "a secret is in an error/Debug: {e}"
            );
        }
    }
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    eprintln!(
        "checked {} secrets against {} bytes of TRACE logs and {} messages",
        secrets.len(),
        logs.len(),
        errors.len()
    );
}

#[test]
fn secret_type_never_prints_its_value() {
    let s = nodepool_shared::cloud::Secret::new(PASSWORD);
    for shown in [
        format!("{s}"),
        format!("{s:?}"),
        format!("{s:#?}"),
        format!("{:?}", Some(&s)),
    ] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
    assert_eq!(s.expose(), PASSWORD);
}
