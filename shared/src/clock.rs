//! TODO(contract)
