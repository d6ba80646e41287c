//! The event loop: one `tokio::select!` over terminal input, the tree cache's change
//! counter and status, the client's connection status, cache events, action outcomes
//! and a one-second clock. The UI never waits on ZooKeeper: the connection is made in
//! the background (the screen says "connecting" meanwhile), drawing reads only the
//! cache, and actions run in spawned tasks that answer over a channel.

use std::future::pending;
use std::time::Duration;

use futures::StreamExt;
use nodepool_shared::model::now_epoch;
use nodepool_shared::zk::{
    CacheEvent, CacheStatus, SessionStatus, TreeCache, ZkClient, ZkError, ZkSettings, ZkStore,
};
use ratatui::crossterm::event::{Event, EventStream};
use ratatui::DefaultTerminal;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::actions::{execute, ActionOutcome};
use crate::app::{App, AppEvent, Command};
use crate::data::{Health, Snapshot};

/// The connection and everything that follows it.
pub struct Source {
    /// The client.
    pub client: ZkClient,
    /// The cache of `/nodepool`.
    pub cache: TreeCache,
    /// For actions.
    pub store: ZkStore,
    /// ZooKeeper hosts for the status line.
    pub hosts: String,
}

impl Source {
    /// Starts the cache on a connected client.
    pub fn start(client: ZkClient) -> Source {
        let hosts = client.settings().connect_string();
        Source {
            cache: TreeCache::start(client.clone()),
            store: ZkStore::new(client.clone()),
            client,
            hosts,
        }
    }

    /// The current health.
    pub fn health(&self) -> Health {
        Health {
            hosts: self.hosts.clone(),
            connection: self.client.status(),
            cache: self.cache.status(),
            changes: self.cache.generation(),
        }
    }
}

async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) -> bool {
    match rx {
        Some(r) => r.changed().await.is_ok(),
        None => pending().await,
    }
}

async fn next_event(rx: &mut Option<broadcast::Receiver<CacheEvent>>) -> Option<CacheEvent> {
    match rx {
        Some(r) => loop {
            match r.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        },
        None => pending().await,
    }
}

/// The receivers of a started source.
struct Feeds {
    generation: Option<watch::Receiver<u64>>,
    cache_status: Option<watch::Receiver<CacheStatus>>,
    connection: Option<watch::Receiver<SessionStatus>>,
    events: Option<broadcast::Receiver<CacheEvent>>,
}

/// Runs the console until the operator quits. Connects in the background.
pub async fn run(
    terminal: &mut DefaultTerminal,
    mut app: App,
    settings: ZkSettings,
) -> std::io::Result<()> {
    let mut connect: Option<JoinHandle<Result<ZkClient, ZkError>>> =
        Some(tokio::spawn(ZkClient::connect(settings)));
    let mut source: Option<Source> = None;
    let mut feeds = Feeds {
        generation: None,
        cache_status: None,
        connection: None,
        events: None,
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ActionOutcome>();
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        terminal.draw(|f| app.render(f))?;
        let command = tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(Event::Key(k))) => app.update(AppEvent::Key(k)),
                Some(Ok(_)) => None, // resize and others: just redraw
                Some(Err(e)) => return Err(e),
                None => Some(Command::Quit),
            },
            joined = async { connect.as_mut().expect("guarded").await }, if connect.is_some() => {
                connect = None;
                match joined {
                    Ok(Ok(client)) => {
                        let s = Source::start(client);
                        feeds = Feeds {
                            generation: Some(s.cache.watch_generation()),
                            cache_status: Some(s.cache.watch_status()),
                            connection: Some(s.client.watch_status()),
                            events: Some(s.cache.subscribe()),
                        };
                        // The cache may have loaded before the receivers above were
                        // made (they start with its current value marked seen): take
                        // the contents now, later changes wake the loop.
                        app.update(AppEvent::Data(Snapshot::from_cache(&s.cache)));
                        app.update(AppEvent::Health(s.health()));
                        source = Some(s);
                    }
                    Ok(Err(e)) => {
                        app.update(AppEvent::Error(format!("cannot connect to ZooKeeper: {e}")));
                    }
                    Err(e) => {
                        app.update(AppEvent::Error(format!("cannot connect to ZooKeeper: {e}")));
                    }
                }
                None
            }
            ok = changed(&mut feeds.generation) => {
                if !ok { feeds.generation = None; }
                if let Some(s) = &source {
                    app.update(AppEvent::Data(Snapshot::from_cache(&s.cache)));
                    app.update(AppEvent::Health(s.health()));
                }
                None
            }
            ok = changed(&mut feeds.cache_status) => {
                if !ok { feeds.cache_status = None; }
                if let Some(s) = &source { app.update(AppEvent::Health(s.health())); }
                None
            }
            ok = changed(&mut feeds.connection) => {
                if !ok { feeds.connection = None; }
                if let Some(s) = &source { app.update(AppEvent::Health(s.health())); }
                None
            }
            ev = next_event(&mut feeds.events) => {
                match ev {
                    Some(e) => {
                        app.update(AppEvent::Cache(e));
                        // Take what else is queued without redrawing per event.
                        if let Some(rx) = feeds.events.as_mut() {
                            while let Ok(e) = rx.try_recv() {
                                app.update(AppEvent::Cache(e));
                            }
                        }
                    }
                    None => feeds.events = None,
                }
                None
            }
            Some(outcome) = out_rx.recv() => app.update(AppEvent::Outcome(outcome)),
            _ = tick.tick() => app.update(AppEvent::Tick(now_epoch())),
        };
        match command {
            Some(Command::Quit) => break,
            Some(Command::Run(action)) => match &source {
                Some(s) => {
                    let store = s.store.clone();
                    let tx = out_tx.clone();
                    tokio::spawn(async move {
                        let result = execute(&store, &action).await.map_err(|e| e.to_string());
                        let _ = tx.send(ActionOutcome { action, result });
                    });
                }
                None => {
                    app.update(AppEvent::Outcome(ActionOutcome {
                        action,
                        result: Err("not connected to ZooKeeper yet".into()),
                    }));
                }
            },
            None => {}
        }
    }
    if let Some(s) = source {
        s.cache.stop();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.client.close()).await;
    }
    if let Some(c) = connect {
        c.abort();
    }
    Ok(())
}
