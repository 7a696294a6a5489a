//! Command line (filled by the CLI work).
