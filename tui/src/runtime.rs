//! The event loop: one `tokio::select!` over terminal input, the tree cache's change
//! counter and status, the client's connection status, cache events, the answers of
//! the background work (actions, console logs, lock owners, quotas) and a one-second
//! clock. The UI never waits on ZooKeeper or a cloud: the connection is made in the
//! background (the screen says "connecting" meanwhile), drawing reads only the cache,
//! and everything else runs in tracked tasks ([`crate::background`]) that answer over
//! a channel. On quit the tasks are stopped first, then the cache, then the client.

use std::future::pending;
use std::time::Duration;

use futures::StreamExt;
use nodepool_shared::model::now_epoch;
use nodepool_shared::zk::{
    CacheEvent, CacheStatus, SessionStatus, TreeCache, ZkClient, ZkError, ZkSettings, ZkStore,
};
use ratatui::crossterm::event::{Event, EventStream};
use ratatui::DefaultTerminal;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::actions::ActionOutcome;
use crate::app::{App, AppEvent, Command};
use crate::background;
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

/// What the loop owns besides the app: the connection (being made, or made), its feeds
/// and the background tasks.
struct Runtime {
    connect: Option<JoinHandle<Result<ZkClient, ZkError>>>,
    source: Option<Source>,
    feeds: Feeds,
    tx: UnboundedSender<AppEvent>,
    tasks: JoinSet<()>,
}

impl Runtime {
    /// The connection is made: start the cache, its feeds and the lock-owner reader.
    fn connected(&mut self, app: &mut App, client: ZkClient) {
        let s = Source::start(client);
        self.feeds = Feeds {
            generation: Some(s.cache.watch_generation()),
            cache_status: Some(s.cache.watch_status()),
            connection: Some(s.client.watch_status()),
            events: Some(s.cache.subscribe()),
        };
        // The cache may have loaded before the receivers above were made (they start
        // with its current value marked seen): take the contents now, later changes
        // wake the loop.
        app.update(AppEvent::Data(Snapshot::from_cache(&s.cache)));
        app.update(AppEvent::Health(s.health()));
        self.tasks.spawn(background::lock_owners(
            s.client.clone(),
            s.cache.clone(),
            self.tx.clone(),
        ));
        self.source = Some(s);
    }

    /// Carries out what the app asked for; `false` to quit.
    fn dispatch(&mut self, app: &mut App, command: Option<Command>) -> bool {
        match command {
            None => {}
            Some(Command::Quit) => return false,
            Some(Command::Run(actions)) => {
                for action in actions {
                    match &self.source {
                        Some(s) => {
                            let store = s.store.clone();
                            self.tasks.spawn(background::run_action(
                                store,
                                action,
                                self.tx.clone(),
                            ));
                        }
                        None => {
                            app.update(AppEvent::Outcome(ActionOutcome {
                                action,
                                result: Err("not connected to ZooKeeper yet".into()),
                            }));
                        }
                    }
                }
            }
            Some(Command::FetchConsole(req)) => {
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    let node = req.node.clone();
                    let result = background::console_log(req).await;
                    let _ = tx.send(AppEvent::Console(node, result));
                });
            }
        }
        true
    }

    /// Stops the tasks, then the cache, then the client.
    async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(s) = self.source {
            s.cache.stop();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.client.close()).await;
        }
        if let Some(c) = self.connect {
            c.abort();
        }
    }
}

/// Runs the console until the operator quits. Connects in the background.
pub async fn run(
    terminal: &mut DefaultTerminal,
    mut app: App,
    settings: ZkSettings,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<AppEvent>();
    app.inspect_in_background(tx.clone());
    let mut rt = Runtime {
        connect: Some(tokio::spawn(ZkClient::connect(settings))),
        source: None,
        feeds: Feeds {
            generation: None,
            cache_status: None,
            connection: None,
            events: None,
        },
        tx,
        tasks: JoinSet::new(),
    };
    if app.config.loaded && !app.config.providers.is_empty() {
        let providers = app.config.providers.clone();
        rt.tasks.spawn(background::quotas(providers, rt.tx.clone()));
    }
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let result = loop {
        if let Err(e) = terminal.draw(|f| app.render(f)) {
            break Err(e);
        }
        let command = tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(Event::Key(k))) => app.update(AppEvent::Key(k)),
                Some(Ok(_)) => None, // resize and others: just redraw
                Some(Err(e)) => break Err(e),
                None => Some(Command::Quit),
            },
            joined = async { rt.connect.as_mut().expect("guarded").await }, if rt.connect.is_some() => {
                rt.connect = None;
                match joined {
                    Ok(Ok(client)) => rt.connected(&mut app, client),
                    Ok(Err(e)) => {
                        app.update(AppEvent::Error(format!("cannot connect to ZooKeeper: {e}")));
                    }
                    Err(e) => {
                        app.update(AppEvent::Error(format!("cannot connect to ZooKeeper: {e}")));
                    }
                }
                None
            }
            ok = changed(&mut rt.feeds.generation) => {
                if !ok { rt.feeds.generation = None; }
                if let Some(s) = &rt.source {
                    app.update(AppEvent::Data(Snapshot::from_cache(&s.cache)));
                    app.update(AppEvent::Health(s.health()));
                }
                None
            }
            ok = changed(&mut rt.feeds.cache_status) => {
                if !ok { rt.feeds.cache_status = None; }
                if let Some(s) = &rt.source { app.update(AppEvent::Health(s.health())); }
                None
            }
            ok = changed(&mut rt.feeds.connection) => {
                if !ok { rt.feeds.connection = None; }
                if let Some(s) = &rt.source { app.update(AppEvent::Health(s.health())); }
                None
            }
            ev = next_event(&mut rt.feeds.events) => {
                match ev {
                    Some(e) => {
                        app.update(AppEvent::Cache(e));
                        // Take what else is queued without redrawing per event.
                        if let Some(rx) = rt.feeds.events.as_mut() {
                            while let Ok(e) = rx.try_recv() {
                                app.update(AppEvent::Cache(e));
                            }
                        }
                    }
                    None => rt.feeds.events = None,
                }
                None
            }
            Some(ev) = rx.recv() => app.update(ev),
            Some(_) = rt.tasks.join_next(), if !rt.tasks.is_empty() => None,
            _ = tick.tick() => app.update(AppEvent::Tick(now_epoch())),
        };
        if !rt.dispatch(&mut app, command) {
            break Ok(());
        }
    };
    rt.shutdown().await;
    result
}
