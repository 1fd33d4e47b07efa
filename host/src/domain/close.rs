//! Close codes and reasons (see the module docs of `domain`).
