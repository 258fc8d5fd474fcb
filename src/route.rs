//! Routing: turns a request path into the route that serves it. Pure: no I/O, no allocation
//! on the common path, unit-tested. Owns path normalisation (RFC 3986 dot-segments, unreserved
//! percent-decoding, `%2F` never a separator), longest-prefix matching on segment boundaries,
//! `strip_prefix` and the Go-style joining of a target's base path.
