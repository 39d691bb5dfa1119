//! Sequences of types no processor handles: the acknowledged-and-ignored path.

use super::*;

impl Scenario {
    pub(super) fn customer_updated(&mut self) -> Step {
        self.customer_created()?;
        self.api();
        self.patch(CUSTOMER, json!({"phone": "+14155550123"}))?;
        self.emit("customer.updated", CUSTOMER)
    }

    pub(super) fn customer_deleted(&mut self) -> Step {
        self.customer_created()?;
        self.api();
        self.emit("customer.deleted", CUSTOMER)
    }

    pub(super) fn payment_method_attached(&mut self) -> Step {
        self.customer_created()?;
        self.api();
        self.emit("payment_method.attached", PAYMENT_METHOD)
    }

    pub(super) fn product_created(&mut self) -> Step {
        self.api();
        self.emit("product.created", PRODUCT)
    }
}
