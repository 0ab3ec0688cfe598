//! Semantic checks serde cannot express. Collects every error, never stops at the first.
