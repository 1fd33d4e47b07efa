//! Names of systems, groups and uids (see the module docs of `domain`).
