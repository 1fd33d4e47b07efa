//! `format!`-style logging macros over [`host::log`](crate::host::log).
//!
//! ```no_run
//! use wasmgate_guest::{log_info, log_warn};
//!
//! let room = "lobby";
//! log_info!("{} joined {room}", "alice");
//! log_warn!("room {room} is getting crowded");
//! ```

/// Log at an explicit [`Level`](crate::Level): `log_at!(Level::Info, "x = {}", x)`.
#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)+) => {
        $crate::host::log($level, &::std::format!($($arg)+))
    };
}

/// Log at `trace` level, `format!` style.
#[macro_export]
macro_rules! log_trace {
    ($($arg:tt)+) => { $crate::log_at!($crate::Level::Trace, $($arg)+) };
}

/// Log at `debug` level, `format!` style.
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)+) => { $crate::log_at!($crate::Level::Debug, $($arg)+) };
}

/// Log at `info` level, `format!` style.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)+) => { $crate::log_at!($crate::Level::Info, $($arg)+) };
}

/// Log at `warn` level, `format!` style.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)+) => { $crate::log_at!($crate::Level::Warn, $($arg)+) };
}

/// Log at `error` level, `format!` style.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)+) => { $crate::log_at!($crate::Level::Error, $($arg)+) };
}
