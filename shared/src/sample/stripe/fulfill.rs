//! The fulfill processor's sequences: payment intents, Checkout, charges and refunds.

use super::*;

impl Scenario {
    // --- fulfill: payments ------------------------------------------------------

    /// `payment_intent.created`.
    pub(super) fn pi_created(&mut self) -> Step {
        self.api();
        self.emit("payment_intent.created", PAYMENT_INTENT)
    }

    /// A card payment: `payment_intent.created` → `charge.succeeded|failed` →
    /// `payment_intent.succeeded|payment_failed|amount_capturable_updated`.
    pub(super) fn card_payment(&mut self, pay: Pay) -> Step {
        self.manual_capture = pay == Pay::Authorized;
        self.pi_created()?;
        self.api();
        match pay {
            Pay::Succeeded => {
                self.emit("charge.succeeded", CHARGE)?;
                self.pi_succeeded()
            }
            Pay::Authorized => {
                self.patch(
                    CHARGE,
                    json!({"amount_captured": 0, "balance_transaction": null, "captured": false}),
                )?;
                self.emit("charge.succeeded", CHARGE)?;
                let (pm, ch) = (self.id("pm"), self.id("ch"));
                self.patch(
                    PAYMENT_INTENT,
                    json!({"amount_capturable": self.seeds.amount, "latest_charge": ch, "payment_method": pm, "status": "requires_capture"}),
                )?;
                self.emit("payment_intent.amount_capturable_updated", PAYMENT_INTENT)
            }
            Pay::Declined => {
                self.charge_failed("card_declined", "Your card was declined.")?;
                self.pi_failed("card_declined", "Your card was declined.")
            }
        }
    }

    pub(super) fn pi_succeeded(&mut self) -> Step {
        let (pm, ch) = (self.id("pm"), self.id("ch"));
        self.patch(
            PAYMENT_INTENT,
            json!({"amount_capturable": 0, "amount_received": self.seeds.amount, "latest_charge": ch, "payment_method": pm, "status": "succeeded"}),
        )?;
        self.emit("payment_intent.succeeded", PAYMENT_INTENT)
    }

    pub(super) fn charge_failed(&mut self, code: &str, message: &str) -> Step {
        let bank = self.method == Method::BankDebit;
        let failure_txn = if bank {
            json!(self.id("txn_ch_failure"))
        } else {
            Value::Null
        };
        self.patch(
            CHARGE,
            json!({
                "amount_captured": 0,
                "balance_transaction": null,
                "captured": false,
                "failure_balance_transaction": failure_txn,
                "failure_code": code,
                "failure_message": message,
                "outcome": {
                    "network_decline_code": if bank { Value::Null } else { json!("05") },
                    "network_status": "declined_by_network",
                    "reason": if bank { Value::Null } else { json!("generic_decline") },
                    "risk_score": 32,
                    "seller_message": "The bank did not return any further details with this decline.",
                    "type": "issuer_declined",
                },
                "paid": false,
                "status": "failed",
            }),
        )?;
        self.emit("charge.failed", CHARGE)
    }

    pub(super) fn pi_failed(&mut self, code: &str, message: &str) -> Step {
        let ch = self.id("ch");
        let bank = self.method == Method::BankDebit;
        let mut pm_object = self.baseline(PAYMENT_METHOD)?;
        merge(&mut pm_object, json!({"customer": null}));
        if bank {
            if let Some(map) = pm_object.as_object_mut() {
                map.remove("card");
                map.insert("type".into(), json!("us_bank_account"));
                map.insert(
                    "us_bank_account".into(),
                    json!({"account_holder_type": "individual", "account_type": "checking", "bank_name": "STRIPE TEST BANK", "fingerprint": ids::alphanumeric(16), "last4": "6789", "routing_number": "110000000"}),
                );
            }
        }
        let decline = if bank {
            Value::Null
        } else {
            json!("generic_decline")
        };
        let error_type = if bank {
            "invalid_request_error"
        } else {
            "card_error"
        };
        self.patch(
            PAYMENT_INTENT,
            json!({
                "last_payment_error": {
                    "charge": ch,
                    "code": code,
                    "decline_code": decline,
                    "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")),
                    "message": message,
                    "payment_method": pm_object,
                    "type": error_type,
                },
                "latest_charge": ch,
                "payment_method": null,
                "status": "requires_payment_method",
            }),
        )?;
        self.emit("payment_intent.payment_failed", PAYMENT_INTENT)
    }

    /// `payment_intent.created` → `payment_intent.requires_action` (3-D Secure).
    pub(super) fn requires_action(&mut self) -> Step {
        self.pi_created()?;
        self.api();
        let (pi, pm) = (self.id("pi"), self.id("pm"));
        let redirect = format!(
            "https://hooks.stripe.com/3d_secure_2/hosted?merchant=acct_1{}&payment_intent={pi}&payment_intent_client_secret={pi}_secret_{}&publishable_key=pk_test_{}",
            self.tag,
            ids::alphanumeric(25),
            ids::alphanumeric(40)
        );
        self.patch(
            PAYMENT_INTENT,
            json!({
                "next_action": {"redirect_to_url": {"return_url": "https://shop.example/checkout/return", "url": redirect}, "type": "redirect_to_url"},
                "payment_method": pm,
                "status": "requires_action",
            }),
        )?;
        self.emit("payment_intent.requires_action", PAYMENT_INTENT)
    }

    /// A US bank debit confirmed: `payment_intent.created` → `charge.pending` → `payment_intent.processing`.
    pub(super) fn bank_debit_pending(&mut self) -> Step {
        self.method = Method::BankDebit;
        self.pi_created()?;
        self.api();
        self.charge_pending()
    }

    pub(super) fn charge_pending(&mut self) -> Step {
        self.patch(
            CHARGE,
            json!({"outcome": {"risk_level": "not_assessed", "risk_score": null}, "paid": false, "status": "pending"}),
        )?;
        self.emit("charge.pending", CHARGE)?;
        let (pm, ch) = (self.id("pm"), self.id("ch"));
        self.patch(
            PAYMENT_INTENT,
            json!({"latest_charge": ch, "payment_method": pm, "status": "processing"}),
        )?;
        self.emit("payment_intent.processing", PAYMENT_INTENT)
    }

    /// Manual capture: … → `payment_intent.amount_capturable_updated`.
    pub(super) fn authorize(&mut self) -> Step {
        self.card_payment(Pay::Authorized)
    }

    /// A bank transfer partly paid into the customer balance.
    pub(super) fn partially_funded(&mut self) -> Step {
        self.method = Method::CustomerBalance;
        self.pi_created()?;
        self.api();
        let remaining = self.seeds.amount - self.seeds.amount / 2;
        let pm = self.id("pm");
        let instructions = json!({
            "amount_remaining": remaining,
            "currency": self.seeds.currency,
            "financial_addresses": [{"aba": {"account_holder_address": null, "account_holder_name": "Payhook Demo", "account_number": ids::digits(12), "account_type": "checking", "bank_address": null, "bank_name": "STRIPE TEST BANK", "routing_number": "110000000"}, "supported_networks": ["ach", "domestic_wire_us"], "type": "aba"}],
            "hosted_instructions_url": format!("https://payments.stripe.com/bank_transfers/instructions/test_{}", ids::alphanumeric(40)),
            "reference": ids::upper_hex(10),
            "type": "us_bank_transfer",
        });
        self.patch(
            PAYMENT_INTENT,
            json!({"next_action": {"display_bank_transfer_instructions": instructions, "type": "display_bank_transfer_instructions"}, "payment_method": pm, "status": "requires_action"}),
        )?;
        self.emit("payment_intent.partially_funded", PAYMENT_INTENT)
    }

    /// `payment_intent.created` → `payment_intent.canceled`.
    pub(super) fn pi_canceled(&mut self) -> Step {
        self.pi_created()?;
        self.api();
        let t = self.now();
        self.patch(
            PAYMENT_INTENT,
            json!({"canceled_at": t, "cancellation_reason": "requested_by_customer", "status": "canceled"}),
        )?;
        self.emit("payment_intent.canceled", PAYMENT_INTENT)
    }

    // --- fulfill: checkout ----------------------------------------------------------

    pub(super) fn complete_session(&mut self, paid: bool) -> Step {
        let pi = self.id("pi");
        self.patch(
            CHECKOUT_SESSION,
            json!({
                "collected_information": {"business_name": null, "individual_name": null, "shipping_details": null},
                "customer_details": {
                    "address": self.billing_details().get("address").cloned(),
                    "business_name": null, "email": "jenny.rosen@example.com", "individual_name": null,
                    "name": "Jenny Rosen", "phone": null, "tax_exempt": "none", "tax_ids": [],
                },
                "payment_intent": pi,
                "payment_status": if paid { "paid" } else { "unpaid" },
                "status": "complete",
                "url": null,
            }),
        )?;
        self.emit("checkout.session.completed", CHECKOUT_SESSION)
    }

    /// Card checkout: `payment_intent.created` → `charge.succeeded` →
    /// `payment_intent.succeeded` → `checkout.session.completed`.
    pub(super) fn checkout_completed(&mut self) -> Step {
        self.ensure(CHECKOUT_SESSION)?;
        self.card_payment(Pay::Succeeded)?;
        self.complete_session(true)
    }

    /// Bank-debit checkout: completed unpaid, then settled or failed days later.
    pub(super) fn checkout_async(&mut self, succeeds: bool) -> Step {
        self.method = Method::BankDebit;
        self.ensure(CHECKOUT_SESSION)?;
        self.pi_created()?;
        self.charge_pending()?;
        self.complete_session(false)?;
        self.auto();
        if succeeds {
            self.patch(
                CHARGE,
                json!({"outcome": {"risk_level": "normal"}, "paid": true, "status": "succeeded"}),
            )?;
            self.emit("charge.succeeded", CHARGE)?;
            self.pi_succeeded()?;
            self.patch(CHECKOUT_SESSION, json!({"payment_status": "paid"}))?;
            self.emit("checkout.session.async_payment_succeeded", CHECKOUT_SESSION)
        } else {
            let message = "The customer's account has insufficient funds to cover this payment.";
            self.charge_failed("insufficient_funds", message)?;
            self.pi_failed("payment_intent_payment_attempt_failed", message)?;
            self.emit("checkout.session.async_payment_failed", CHECKOUT_SESSION)
        }
    }

    /// An abandoned session expiring after 24 hours.
    pub(super) fn checkout_expired(&mut self) -> Step {
        self.ensure(CHECKOUT_SESSION)?;
        self.auto();
        self.patch(CHECKOUT_SESSION, json!({"status": "expired", "url": null}))?;
        self.emit("checkout.session.expired", CHECKOUT_SESSION)
    }

    // --- fulfill: charges and refunds -------------------------------------------------

    /// Authorise, then capture: … → `charge.captured` → `payment_intent.succeeded`.
    pub(super) fn capture(&mut self) -> Step {
        self.card_payment(Pay::Authorized)?;
        self.api();
        let txn = self.id("txn_ch");
        self.patch(
            CHARGE,
            json!({"amount_captured": self.seeds.amount, "balance_transaction": txn, "captured": true}),
        )?;
        self.emit("charge.captured", CHARGE)?;
        self.pi_succeeded()
    }

    /// Authorise, never capture: … → `charge.expired` → `payment_intent.canceled`.
    pub(super) fn authorization_expired(&mut self) -> Step {
        self.card_payment(Pay::Authorized)?;
        self.auto();
        self.patch(
            CHARGE,
            json!({"amount_refunded": self.seeds.amount, "refunded": true}),
        )?;
        self.emit("charge.expired", CHARGE)?;
        let t = self.now();
        self.patch(
            PAYMENT_INTENT,
            json!({"amount_capturable": 0, "canceled_at": t, "cancellation_reason": "automatic", "status": "canceled"}),
        )?;
        self.emit("payment_intent.canceled", PAYMENT_INTENT)
    }

    /// A paid charge whose balance transaction is attached afterwards, as
    /// Stripe now does: … → `charge.updated` (`balance_transaction` was `null`).
    pub(super) fn charge_settled(&mut self) -> Step {
        self.patch(CHARGE, json!({"balance_transaction": null}))?;
        self.card_payment(Pay::Succeeded)?;
        self.auto();
        let txn = self.id("txn_ch");
        self.patch(CHARGE, json!({"balance_transaction": txn}))?;
        self.emit("charge.updated", CHARGE)
    }

    /// A paid charge refunded: … → `charge.refunded` → `refund.created`.
    pub(super) fn refund(&mut self) -> Step {
        self.card_payment(Pay::Succeeded)?;
        self.api();
        self.ensure(REFUND)?;
        let refunded = self.seeds.refund_amount.unwrap_or(self.seeds.amount);
        let refund = self.live.get(REFUND).cloned().unwrap_or(Value::Null);
        let ch = self.id("ch");
        self.patch(
            CHARGE,
            json!({
                "amount_refunded": refunded,
                "refunded": refunded >= self.seeds.amount,
                "refunds": {"object": "list", "data": [refund], "has_more": false, "url": format!("/v1/charges/{ch}/refunds")},
            }),
        )?;
        self.emit("charge.refunded", CHARGE)?;
        self.emit("refund.created", REFUND)
    }

    /// The refund's acquirer reference number arrives: … → `charge.refund.updated` or `refund.updated`.
    pub(super) fn refund_reference(&mut self, event_type: &str) -> Step {
        self.refund()?;
        self.auto();
        self.patch(
            REFUND,
            json!({"destination_details": {"card": {"reference": ids::digits(23), "reference_status": "available"}}}),
        )?;
        self.emit(event_type, REFUND)
    }

    /// The card refund bounces (closed card): … → `refund.failed`.
    pub(super) fn refund_failed(&mut self) -> Step {
        self.refund()?;
        self.auto();
        let txn = self.id("txn_re_failure");
        self.patch(
            REFUND,
            json!({"failure_balance_transaction": txn, "failure_reason": "expired_or_canceled_card", "status": "failed"}),
        )?;
        self.emit("refund.failed", REFUND)
    }
}
