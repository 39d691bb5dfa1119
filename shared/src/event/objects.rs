//! Typed views of the Stripe objects the processors read.
