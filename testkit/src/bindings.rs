//! Bindings of contract 0.2.0, synchronous: the simulation drives the guest on the caller's
//! thread, so a test reads as a plain sequence of calls.

wasmtime::component::bindgen!({
    path: "../wit/0.2.0",
    world: "plugin",
});
