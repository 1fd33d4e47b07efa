//! The [`Plugin`] trait and the [`export_plugin!`](crate::export_plugin) glue.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::{CloseReason, ConnectContext, Message, Reject, Timer};

/// The business logic of a plugin: one handler per event the gateway delivers.
///
/// Every handler has a default that does nothing (and `on_connect` accepts), so a plugin
/// implements only what it needs. The gateway calls one handler at a time, in order, so `&mut
/// self` is never contended. The value lives in the instance's memory: it is created by
/// [`export_plugin!`](crate::export_plugin) when the instance starts and is lost on a trap or a
/// hot reload. Keep what must survive in the key-value store ([`crate::host::kv_set_json`]).
///
/// ```no_run
/// use wasmgate_guest::{Message, Plugin, export_plugin, host};
///
/// #[derive(Default)]
/// struct Echo {
///     /// Messages seen by this instance (lost on reload: fine for a counter in a demo).
///     seen: u64,
/// }
///
/// impl Plugin for Echo {
///     fn on_message(&mut self, client: &str, msg: Message) {
///         self.seen += 1;
///         let _ = host::send_to_client(client, msg);
///     }
/// }
///
/// export_plugin!(Echo);
/// # fn main() {}
/// ```
pub trait Plugin: 'static {
    /// Called once per instance before any other event, with the plugin's config (often JSON,
    /// empty when none is set). `Err` stops the load; on a hot reload the old version keeps
    /// serving.
    fn init(&mut self, config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// A client connected; `ctx` says how (query parameters, selected headers, peer, verified
    /// token claims). `Err(Reject)` closes it with that code and reason; a panic accepts it.
    fn on_connect(&mut self, client: &str, ctx: &ConnectContext) -> Result<(), Reject> {
        let _ = (client, ctx);
        Ok(())
    }

    /// A client sent a frame (text or binary). See [`crate::Router`] for JSON event routing.
    fn on_message(&mut self, client: &str, msg: Message) {
        let _ = (client, msg);
    }

    /// A client disconnected; it has already left the registry (uid, groups, info are gone).
    fn on_close(&mut self, client: &str, reason: CloseReason) {
        let _ = (client, reason);
    }

    /// A timer set with [`crate::host::set_timer`] (or [`crate::host::set_client_timer`])
    /// fired, in the system that set it.
    fn on_timer(&mut self, timer: &Timer) {
        let _ = timer;
    }
}

/// Where `export_plugin!` keeps the plugin value: one per instance (the component is
/// single-threaded, so a thread-local is a plain global).
#[doc(hidden)]
pub type Slot<T> = LocalKey<RefCell<Option<T>>>;

/// Run `f` on the plugin value, creating it with `ctor` if the instance has none yet.
///
/// The borrow cannot be contended: the component model forbids re-entering an instance, so a
/// handler can never run while another is on the stack.
#[doc(hidden)]
pub fn with_plugin<T: Plugin, R>(
    slot: &'static Slot<T>,
    ctor: fn() -> T,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    slot.with(|cell| {
        let mut guard = cell.borrow_mut();
        f(guard.get_or_insert_with(ctor))
    })
}

/// `init`: build a fresh value (so an instance never carries state into `init`) and call it.
#[doc(hidden)]
pub fn init<T: Plugin>(
    slot: &'static Slot<T>,
    ctor: fn() -> T,
    config: &str,
) -> Result<(), String> {
    slot.with(|cell| {
        let mut guard = cell.borrow_mut();
        guard.insert(ctor()).init(config)
    })
}

/// Export a [`Plugin`] type as the component's `plugin` world.
///
/// `export_plugin!(MyPlugin)` builds the value with `Default::default()`;
/// `export_plugin!(MyPlugin, ctor)` uses `ctor: fn() -> MyPlugin` (a path or a closure)
/// instead. Use it once per crate, at the top level of a `cdylib` crate. The value is created
/// when `init` runs (or lazily on the first event, should a host skip `init`).
///
/// ```no_run
/// use wasmgate_guest::{Plugin, export_plugin};
///
/// struct Greeter {
///     /// What to say, from the init config.
///     greeting: String,
/// }
///
/// impl Greeter {
///     fn new() -> Self {
///         Greeter { greeting: "hello".to_owned() }
///     }
/// }
///
/// impl Plugin for Greeter {
///     fn init(&mut self, config: &str) -> Result<(), String> {
///         if !config.is_empty() {
///             self.greeting = config.to_owned();
///         }
///         Ok(())
///     }
/// }
///
/// export_plugin!(Greeter, Greeter::new);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        $crate::export_plugin!($ty, <$ty as ::core::default::Default>::default);
    };
    ($ty:ty, $ctor:expr) => {
        const _: () = {
            ::std::thread_local! {
                static __WASMGATE_PLUGIN: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            fn __wasmgate_ctor() -> $ty {
                ($ctor)()
            }

            struct __WasmgateExport;

            impl $crate::bindings::Guest for __WasmgateExport {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init(&__WASMGATE_PLUGIN, __wasmgate_ctor, &config)
                }

                fn on_connect(
                    client: ::std::string::String,
                    ctx: $crate::ConnectContext,
                ) -> ::core::result::Result<(), $crate::Reject> {
                    $crate::__private::with_plugin(&__WASMGATE_PLUGIN, __wasmgate_ctor, |p| {
                        $crate::Plugin::on_connect(p, &client, &ctx)
                    })
                }

                fn on_message(client: ::std::string::String, msg: $crate::Message) {
                    $crate::__private::with_plugin(&__WASMGATE_PLUGIN, __wasmgate_ctor, |p| {
                        $crate::Plugin::on_message(p, &client, msg)
                    })
                }

                fn on_close(client: ::std::string::String, reason: $crate::CloseReason) {
                    $crate::__private::with_plugin(&__WASMGATE_PLUGIN, __wasmgate_ctor, |p| {
                        $crate::Plugin::on_close(p, &client, reason)
                    })
                }

                fn on_timer(timer: $crate::Timer) {
                    $crate::__private::with_plugin(&__WASMGATE_PLUGIN, __wasmgate_ctor, |p| {
                        $crate::Plugin::on_timer(p, &timer)
                    })
                }
            }

    $crate::bindings::export_raw!(__WasmgateExport with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin that records what the glue hands it, to check construction and dispatch.
    struct Probe {
        /// Which constructor built this value, to tell `init`'s fresh value from a lazy one.
        built_by: &'static str,
        /// Events seen, in order.
        log: Vec<String>,
    }

    impl Plugin for Probe {
        fn init(&mut self, config: &str) -> Result<(), String> {
            if config == "bad" {
                return Err("refused".into());
            }
            self.log.push(format!("init:{config}"));
            Ok(())
        }
        fn on_timer(&mut self, timer: &Timer) {
            self.log
                .push(format!("timer:{}:{}", timer.id, timer.payload));
        }
    }

    thread_local! {
        static SLOT: RefCell<Option<Probe>> = const { RefCell::new(None) };
    }

    fn timer(id: u64, payload: &str) -> Timer {
        Timer {
            id,
            payload: payload.to_owned(),
            client: None,
        }
    }

    fn ctor() -> Probe {
        Probe {
            built_by: "ctor",
            log: Vec::new(),
        }
    }

    #[test]
    fn lazy_construction_then_init_replaces_the_value() {
        with_plugin(&SLOT, ctor, |p| p.on_timer(&timer(1, "early")));
        let seen = with_plugin(&SLOT, ctor, |p| p.log.clone());
        assert_eq!(seen, ["timer:1:early"]);

        assert_eq!(init(&SLOT, ctor, "cfg"), Ok(()));
        with_plugin(&SLOT, ctor, |p| p.on_timer(&timer(2, "late")));
        let (by, seen) = with_plugin(&SLOT, ctor, |p| (p.built_by, p.log.clone()));
        assert_eq!(by, "ctor");
        assert_eq!(
            seen,
            ["init:cfg", "timer:2:late"],
            "init must start from a fresh value"
        );

        assert_eq!(init(&SLOT, ctor, "bad"), Err("refused".to_owned()));
    }

    #[test]
    fn default_handlers_accept_and_ignore() {
        struct Nothing;
        impl Plugin for Nothing {}
        let mut n = Nothing;
        assert_eq!(n.init("x"), Ok(()));
        let ctx = ConnectContext {
            query: Vec::new(),
            headers: Vec::new(),
            peer: String::new(),
            uid: None,
            claims: None,
        };
        assert_eq!(n.on_connect("c1", &ctx), Ok(()));
        n.on_message("c1", Message::text("hi"));
        n.on_close(
            "c1",
            CloseReason {
                code: 1000,
                reason: String::new(),
            },
        );
        n.on_timer(&timer(7, "p"));
    }
}
