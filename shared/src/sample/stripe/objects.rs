//! Each object as Stripe returns it on creation, from its fixture with the
//! scenario's ids, amounts and times.

use super::*;

impl Scenario {
    /// `kind`'s object as Stripe returns it on creation: the fixture with
    /// this scenario's ids, amounts and times, and the fixture's placeholder
    /// values (`obj_123`, random numbers) replaced by realistic ones.
    pub(super) fn baseline(&mut self, kind: &'static str) -> Result<Value, SampleError> {
        let mut object = match kind {
            PAYMENT_INTENT => self.payment_intent(),
            CHARGE => self.charge(),
            CHECKOUT_SESSION => self.checkout_session(),
            REFUND => self.refund_object(),
            CUSTOMER => self.customer(),
            PAYMENT_METHOD => self.payment_method(),
            PRODUCT => self.product(),
            SUBSCRIPTION => self.subscription(),
            INVOICE => self.invoice(
                "subscription_create",
                self.seeds.amount,
                (self.now(), self.now()),
            ),
            DISPUTE => self.dispute(),
            PAYOUT => self.payout(),
            ACCOUNT => self.account(),
            BANK_ACCOUNT => self.bank_account(),
            other => Err(SampleError::Fixtures(format!(
                "no sample object of kind `{other}`"
            ))),
        }?;
        // Stripe acting as merchant of record is an opt-in the fixtures show on.
        if let Some(managed) = object.get_mut("managed_payments") {
            *managed = json!({"enabled": false});
        }
        Ok(object)
    }

    pub(super) fn billing_details(&self) -> Value {
        json!({
            "address": {"city": "San Francisco", "country": "US", "line1": "510 Townsend St", "line2": null, "postal_code": "94103", "state": "CA"},
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "phone": null,
            "tax_id": null,
        })
    }

    pub(super) fn payment_intent(&mut self) -> Result<Value, SampleError> {
        let (pi, pmc) = (self.id("pi"), self.id("pmc"));
        let mut o = fixture(PAYMENT_INTENT)?;
        merge(
            &mut o,
            json!({
                "id": pi,
                "amount": self.seeds.amount,
                "amount_capturable": 0,
                "amount_received": 0,
                "canceled_at": null,
                "cancellation_reason": null,
                "capture_method": if self.manual_capture { "manual" } else { "automatic_async" },
                "client_secret": format!("{pi}_secret_{}", ids::alphanumeric(25)),
                "created": self.now(),
                "currency": self.seeds.currency,
                "customer": null,
                "description": null,
                "last_payment_error": null,
                "latest_charge": null,
                "metadata": {},
                "next_action": null,
                "payment_method": null,
                "payment_method_configuration_details": {"id": pmc, "parent": null},
                "processing": null,
                "receipt_email": null,
                "shipping": null,
                "source": null,
                "status": "requires_payment_method",
                "transfer_data": null,
            }),
        );
        let (types, options) = match self.method {
            Method::Card => (
                json!(["card", "link"]),
                json!({"card": {"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"}, "link": {"persistent_token": null}}),
            ),
            Method::BankDebit => (
                json!(["us_bank_account"]),
                json!({"us_bank_account": {"verification_method": "automatic"}}),
            ),
            Method::CustomerBalance => {
                let cus = self.id("cus");
                merge(&mut o, json!({"customer": cus}));
                (
                    json!(["customer_balance"]),
                    json!({"customer_balance": {"bank_transfer": {"type": "us_bank_transfer"}, "funding_type": "bank_transfer"}}),
                )
            }
        };
        if let Some(map) = o.as_object_mut() {
            map.insert("payment_method_types".into(), types);
            map.insert("payment_method_options".into(), options);
        }
        Ok(o)
    }

    pub(super) fn charge(&mut self) -> Result<Value, SampleError> {
        let (ch, pi, pm, txn) = (
            self.id("ch"),
            self.id("pi"),
            self.id("pm"),
            self.id("txn_ch"),
        );
        let amount = self.seeds.amount;
        let mut o = fixture(CHARGE)?;
        merge(
            &mut o,
            json!({
                "id": ch,
                "amount": amount,
                "amount_captured": amount,
                "amount_refunded": 0,
                "balance_transaction": txn,
                "billing_details": self.billing_details(),
                "calculated_statement_descriptor": "PAYHOOK DEMO",
                "captured": true,
                "created": self.now(),
                "currency": self.seeds.currency,
                "customer": null,
                "description": null,
                "disputed": false,
                "failure_balance_transaction": null,
                "failure_code": null,
                "failure_message": null,
                "fraud_details": {},
                "metadata": {},
                "outcome": {
                    "advice_code": null,
                    "network_advice_code": null,
                    "network_decline_code": null,
                    "network_status": "approved_by_network",
                    "reason": null,
                    "risk_level": "normal",
                    "risk_score": 32,
                    "seller_message": "Payment complete.",
                    "type": "authorized",
                },
                "paid": true,
                "payment_intent": pi,
                "payment_method": pm,
                "receipt_email": null,
                "receipt_url": format!("https://pay.stripe.com/receipts/payment/{}", ids::alphanumeric(96)),
                "refunded": false,
                "refunds": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/charges/{ch}/refunds")},
                "review": null,
                "shipping": null,
                "source": null,
                "status": "succeeded",
                "transfer_data": null,
            }),
        );
        let details = if self.method == Method::BankDebit {
            json!({
                "type": "us_bank_account",
                "us_bank_account": {
                    "account_holder_type": "individual",
                    "account_type": "checking",
                    "bank_name": "STRIPE TEST BANK",
                    "expected_debit_date": null,
                    "fingerprint": ids::alphanumeric(16),
                    "last4": "6789",
                    "mandate": format!("mandate_1{}", ids::alphanumeric(23)),
                    "payment_reference": null,
                    "routing_number": "110000000",
                },
            })
        } else {
            let mut details = o
                .get("payment_method_details")
                .cloned()
                .unwrap_or_else(|| json!({}));
            merge(
                &mut details,
                json!({
                    "card": {
                        "amount_authorized": amount,
                        "checks": {"address_line1_check": "pass", "address_postal_code_check": "pass", "cvc_check": "pass"},
                        "installments": null,
                        "network_transaction_id": ids::digits(15),
                        "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                        "wallet": null,
                    },
                    "type": "card",
                }),
            );
            details
        };
        if let Some(map) = o.as_object_mut() {
            map.insert("payment_method_details".into(), details);
        }
        Ok(o)
    }

    pub(super) fn checkout_session(&mut self) -> Result<Value, SampleError> {
        let (cs, pmc) = (self.id("cs"), self.id("pmc"));
        let amount = self.seeds.amount;
        let mut o = fixture(CHECKOUT_SESSION)?;
        merge(
            &mut o,
            json!({
                "id": cs,
                "after_expiration": null,
                "amount_subtotal": amount,
                "amount_total": amount,
                "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
                "client_reference_id": null,
                "collected_information": null,
                "consent": null,
                "consent_collection": null,
                "created": self.now(),
                "currency": self.seeds.currency,
                "currency_conversion": null,
                "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
                "customer": null,
                "customer_creation": "if_required",
                "customer_details": null,
                "customer_email": null,
                "discounts": [],
                "expires_at": self.now() + DAY,
                "invoice": null,
                "invoice_creation": {"enabled": false, "invoice_data": {"account_tax_ids": null, "custom_fields": null, "description": null, "footer": null, "issuer": null, "metadata": {}, "rendering_options": null}},
                "metadata": {},
                "mode": "payment",
                "payment_intent": null,
                "payment_method_configuration_details": {"id": pmc, "parent": null},
                "payment_method_options": {},
                "payment_status": "unpaid",
                "shipping_address_collection": null,
                "shipping_cost": null,
                "status": "open",
                "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
                "ui_mode": "hosted",
                "url": format!("https://checkout.stripe.com/c/pay/{cs}#{}", ids::alphanumeric(40)),
                "wallet_options": null,
            }),
        );
        let types = if self.method == Method::BankDebit {
            json!(["us_bank_account"])
        } else {
            json!(["card", "link"])
        };
        if let Some(map) = o.as_object_mut() {
            map.insert("payment_method_types".into(), types);
        }
        Ok(o)
    }

    pub(super) fn refund_object(&mut self) -> Result<Value, SampleError> {
        let (re, ch, pi, pm, txn) = (
            self.id("re"),
            self.id("ch"),
            self.id("pi"),
            self.id("pm"),
            self.id("txn_re"),
        );
        let mut o = fixture(REFUND)?;
        merge(
            &mut o,
            json!({
                "id": re,
                "amount": self.seeds.refund_amount.unwrap_or(self.seeds.amount),
                "balance_transaction": txn,
                "charge": ch,
                "created": self.now(),
                "currency": self.seeds.currency,
                "destination_details": {"card": {"reference": null, "reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"},
                "metadata": {},
                "payment_intent": pi,
                "payment_method": pm,
                "reason": "requested_by_customer",
                "receipt_number": null,
                "status": "succeeded",
            }),
        );
        Ok(o)
    }

    pub(super) fn customer(&mut self) -> Result<Value, SampleError> {
        let (cus, pm) = (self.id("cus"), self.id("pm"));
        let mut o = fixture(CUSTOMER)?;
        merge(
            &mut o,
            json!({
                "id": cus,
                "address": self.billing_details().get("address").cloned(),
                "created": self.now(),
                "currency": null,
                "discount": null,
                "email": "jenny.rosen@example.com",
                "invoice_prefix": self.invoice_prefix,
                "invoice_settings": {"custom_fields": null, "default_payment_method": pm, "footer": null, "rendering_options": null},
                "metadata": {},
                "name": "Jenny Rosen",
                "shipping": null,
            }),
        );
        Ok(o)
    }

    pub(super) fn payment_method(&mut self) -> Result<Value, SampleError> {
        let (pm, cus) = (self.id("pm"), self.id("cus"));
        let mut o = fixture(PAYMENT_METHOD)?;
        merge(
            &mut o,
            json!({
                "id": pm,
                "allow_redisplay": "always",
                "billing_details": self.billing_details(),
                "card": {"generated_from": null, "wallet": null},
                "created": self.now(),
                "customer": cus,
                "metadata": {},
            }),
        );
        Ok(o)
    }

    pub(super) fn product(&mut self) -> Result<Value, SampleError> {
        let (prod, price) = (self.id("prod"), self.id("price"));
        let mut o = fixture(PRODUCT)?;
        merge(
            &mut o,
            json!({
                "id": prod,
                "created": self.now(),
                "default_price": price,
                "description": "Everything in Payhook, billed monthly.",
                "name": "Payhook Pro",
                "package_dimensions": null,
                "type": "service",
                "updated": self.now(),
            }),
        );
        Ok(o)
    }

    /// The subscription's only item at `quantity`, over `period`.
    pub(super) fn subscription_item(
        &mut self,
        quantity: u64,
        period: (i64, i64),
        created: i64,
    ) -> Result<Value, SampleError> {
        let (si, sub, price, prod) = (
            self.id("si"),
            self.id("sub"),
            self.id("price"),
            self.id("prod"),
        );
        let amount = self.seeds.amount;
        let currency = self.seeds.currency.clone();
        let mut price_object = fixture("price")?;
        merge(
            &mut price_object,
            json!({
                "id": price, "created": created, "currency": currency, "custom_unit_amount": null,
                "lookup_key": "pro_monthly", "product": prod, "transform_quantity": null,
                "unit_amount": amount, "unit_amount_decimal": amount.to_string(),
            }),
        );
        let mut plan = fixture("plan")?;
        merge(
            &mut plan,
            json!({
                "id": price, "amount": amount, "amount_decimal": amount.to_string(), "created": created,
                "currency": currency, "product": prod, "transform_usage": null,
            }),
        );
        Ok(json!({
            "id": si,
            "object": "subscription_item",
            "billing_thresholds": null,
            "created": created,
            "current_period_end": period.1,
            "current_period_start": period.0,
            "discounts": [],
            "metadata": {},
            "plan": plan,
            "price": price_object,
            "quantity": quantity,
            "subscription": sub,
            "tax_rates": [],
        }))
    }

    pub(super) fn subscription(&mut self) -> Result<Value, SampleError> {
        let (sub, cus, pm, inv) = (self.id("sub"), self.id("cus"), self.id("pm"), self.id("in"));
        let t = self.now();
        let period = (t, add_months(t, 1));
        let item = self.subscription_item(1, period, t)?;
        let mut o = fixture("subscription")?;
        merge(
            &mut o,
            json!({
                "id": sub,
                "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
                "billing_cycle_anchor": t,
                "billing_cycle_anchor_config": null,
                "billing_mode": {"flexible": {"proration_discounts": "included"}, "type": "flexible", "updated_at": t},
                "billing_schedules": [],
                "billing_thresholds": null,
                "cancel_at": null,
                "cancel_at_period_end": false,
                "canceled_at": null,
                "cancellation_details": {"comment": null, "feedback": null, "reason": null},
                "created": t,
                "currency": self.seeds.currency,
                "customer": cus,
                "default_payment_method": pm,
                "ended_at": null,
                "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
                "items": {"object": "list", "data": [item], "has_more": false, "url": format!("/v1/subscription_items?subscription={sub}")},
                "latest_invoice": inv,
                "metadata": {},
                "next_pending_invoice_item_invoice": null,
                "pause_collection": null,
                "payment_settings": {"payment_method_options": null, "payment_method_types": null, "save_default_payment_method": "off"},
                "pending_invoice_item_interval": null,
                "pending_update": null,
                "start_date": t,
                "status": "active",
                "transfer_data": null,
                "trial_end": null,
                "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
                "trial_start": null,
            }),
        );
        Ok(o)
    }

    /// A draft invoice of the subscription for `amount`, covering `period`
    /// (Stripe's invoice period; the line covers the subscription's period).
    pub(super) fn invoice(
        &mut self,
        billing_reason: &str,
        amount: i64,
        period: (i64, i64),
    ) -> Result<Value, SampleError> {
        let (inv, il, sub, si, cus, price, prod) = (
            self.id("in"),
            self.id("il"),
            self.id("sub"),
            self.id("si"),
            self.id("cus"),
            self.id("price"),
            self.id("prod"),
        );
        let t = self.now();
        let line_period = match self.live.get(SUBSCRIPTION) {
            Some(sub) => (
                sub.pointer("/items/data/0/current_period_start")
                    .and_then(Value::as_i64)
                    .unwrap_or(t),
                sub.pointer("/items/data/0/current_period_end")
                    .and_then(Value::as_i64)
                    .unwrap_or_else(|| add_months(t, 1)),
            ),
            None => (t, add_months(t, 1)),
        };
        let description = if amount == 0 {
            "Trial period for Payhook Pro".to_owned()
        } else {
            format!(
                "1 × Payhook Pro (at {} / month)",
                money(self.seeds.amount, &self.seeds.currency)
            )
        };
        let line = json!({
            "id": il,
            "object": "line_item",
            "amount": amount,
            "currency": self.seeds.currency,
            "description": description,
            "discount_amounts": [],
            "discountable": true,
            "discounts": [],
            "invoice": inv,
            "livemode": false,
            "metadata": {},
            "parent": {
                "invoice_item_details": null,
                "subscription_item_details": {"invoice_item": null, "proration": false, "proration_details": {"credited_items": null}, "subscription": sub, "subscription_item": si},
                "type": "subscription_item_details",
            },
            "period": {"end": line_period.1, "start": line_period.0},
            "pretax_credit_amounts": [],
            "pricing": {"price_details": {"price": price, "product": prod}, "type": "price_details", "unit_amount_decimal": amount.to_string()},
            "quantity": 1,
            "subscription": sub,
            "subtotal": amount,
            "taxes": [],
        });
        let mut o = fixture(INVOICE)?;
        merge(
            &mut o,
            json!({
                "id": inv,
                "account_name": "Payhook Demo",
                "amount_due": amount,
                "amount_overpaid": 0,
                "amount_paid": 0,
                "amount_remaining": amount,
                "attempt_count": 0,
                "attempted": false,
                "auto_advance": true,
                "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null},
                "automatically_finalizes_at": t + 3600,
                "billing_reason": billing_reason,
                "created": t,
                "currency": self.seeds.currency,
                "customer": cus,
                "customer_address": self.billing_details().get("address").cloned(),
                "customer_email": "jenny.rosen@example.com",
                "customer_name": "Jenny Rosen",
                "customer_shipping": null,
                "due_date": null,
            }),
        );
        merge(
            &mut o,
            json!({
                "effective_at": null,
                "from_invoice": null,
                "issuer": {"type": "self"},
                "last_finalization_error": null,
                "lines": {"object": "list", "data": [line], "has_more": false, "url": format!("/v1/invoices/{inv}/lines")},
                "next_payment_attempt": null,
                "parent": {"quote_details": null, "subscription_details": {"metadata": {}, "subscription": sub}, "type": "subscription_details"},
                "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
                "period_end": period.1,
                "period_start": period.0,
                "rendering": null,
                "shipping_cost": null,
                "shipping_details": null,
                "status": "draft",
                "status_transitions": {"finalized_at": null, "marked_uncollectible_at": null, "paid_at": null, "voided_at": null},
                "subscription": sub,
                "subtotal": amount,
                "subtotal_excluding_tax": amount,
                "total": amount,
                "total_excluding_tax": amount,
                "total_pretax_credit_amounts": [],
                "total_taxes": [],
                "webhooks_delivered_at": null,
            }),
        );
        Ok(o)
    }

    pub(super) fn balance_transaction(
        &mut self,
        role: &'static str,
        amount: i64,
        fee: i64,
        source: String,
        description: &str,
        category: &str,
    ) -> Result<Value, SampleError> {
        let id = self.id(role);
        let mut o = fixture("balance_transaction")?;
        let fee_details = if fee == 0 {
            json!([])
        } else {
            json!([{"amount": fee, "application": null, "currency": self.seeds.currency, "description": "Dispute fee", "type": "stripe_fee"}])
        };
        merge(
            &mut o,
            json!({
                "id": id,
                "amount": amount,
                "available_on": midnight_after(self.now(), 2),
                "created": self.now(),
                "currency": self.seeds.currency,
                "description": description,
                "fee": fee,
                "fee_details": fee_details,
                "net": amount - fee,
                "reporting_category": category,
                "source": source,
                "status": "pending",
                "type": "adjustment",
            }),
        );
        Ok(o)
    }

    pub(super) fn dispute(&mut self) -> Result<Value, SampleError> {
        let (dp, ch, pi) = (self.id("dp"), self.id("ch"), self.id("pi"));
        let t = self.now();
        let mut o = fixture(DISPUTE)?;
        merge(
            &mut o,
            json!({
                "id": dp,
                "amount": self.seeds.amount,
                "balance_transactions": [],
                "charge": ch,
                "created": t,
                "currency": self.seeds.currency,
                "enhanced_eligibility_types": [],
                "evidence_details": {"due_by": end_of_day_after(t, 7), "enhanced_eligibility": {}, "has_evidence": false, "past_due": false, "submission_count": 0},
                "is_charge_refundable": false,
                "metadata": {},
                "payment_intent": pi,
                "payment_method_details": {"card": {"brand": "visa", "case_type": "chargeback", "network": "visa", "network_reason_code": "10.4"}, "type": "card"},
                "reason": "fraudulent",
                "status": "needs_response",
            }),
        );
        Ok(o)
    }

    pub(super) fn payout(&mut self) -> Result<Value, SampleError> {
        let (po, txn, ba) = (self.id("po"), self.id("txn_po"), self.id("ba_platform"));
        let t = self.now();
        let mut o = fixture(PAYOUT)?;
        merge(
            &mut o,
            json!({
                "id": po,
                "amount": self.seeds.amount,
                "arrival_date": midnight_after(t, 2),
                "automatic": true,
                "balance_transaction": txn,
                "created": t,
                "currency": self.seeds.currency,
                "description": "STRIPE PAYOUT",
                "destination": ba,
                "failure_balance_transaction": null,
                "failure_code": null,
                "failure_message": null,
                "metadata": {},
                "method": "standard",
                "reconciliation_status": "in_progress",
                "source_type": "card",
                "status": "pending",
                "trace_id": {"status": "pending", "value": null},
            }),
        );
        Ok(o)
    }

    pub(super) fn account(&mut self) -> Result<Value, SampleError> {
        let acct = self.id("acct");
        let bank = self.baseline(BANK_ACCOUNT)?;
        let t = self.now() - 90 * DAY;
        let no_requirements = json!({
            "alternatives": [], "current_deadline": null, "currently_due": [], "disabled_reason": null,
            "errors": [], "eventually_due": [], "past_due": [], "pending_verification": [],
        });
        let mut o = fixture(ACCOUNT)?;
        merge(
            &mut o,
            json!({
                "id": acct,
                "business_profile": {"mcc": "5734", "name": "Rosen Records", "product_description": "Vinyl records and turntables", "support_email": "support@rosen-records.example", "url": "https://rosen-records.example"},
                "business_type": "individual",
                "capabilities": {"card_payments": "active", "transfers": "active"},
                "charges_enabled": true,
                "controller": {"fees": {"payer": "application"}, "is_controller": true, "losses": {"payments": "application"}, "requirement_collection": "stripe", "stripe_dashboard": {"type": "express"}, "type": "application"},
                "created": t,
                "details_submitted": true,
                "email": "jenny.rosen@example.com",
                "external_accounts": {"object": "list", "data": [bank], "has_more": false, "url": format!("/v1/accounts/{acct}/external_accounts")},
                "future_requirements": no_requirements.clone(),
                "payouts_enabled": true,
                "requirements": no_requirements,
                "tos_acceptance": {"date": t, "ip": "203.0.113.7", "user_agent": null},
                "type": "express",
            }),
        );
        Ok(o)
    }

    pub(super) fn bank_account(&mut self) -> Result<Value, SampleError> {
        let (ba, acct) = (self.id("ba"), self.id("acct"));
        let mut o = fixture(BANK_ACCOUNT)?;
        merge(
            &mut o,
            json!({
                "id": ba,
                "account": acct,
                "account_holder_name": "Jenny Rosen",
                "account_holder_type": "individual",
                "available_payout_methods": ["standard", "instant"],
                "default_for_currency": true,
                "fingerprint": ids::alphanumeric(16),
                "metadata": {},
                "status": "new",
            }),
        );
        if let Some(map) = o.as_object_mut() {
            map.remove("customer");
        }
        Ok(o)
    }
}
