//! The subscription processor's sequences: subscriptions and their invoices.

use super::*;

impl Scenario {
    pub(super) fn customer_created(&mut self) -> Step {
        self.api();
        self.emit("customer.created", CUSTOMER)
    }

    /// `invoice.created` (draft) as the current request/schedule causes it.
    pub(super) fn invoice_created(
        &mut self,
        billing_reason: &str,
        amount: i64,
        period: (i64, i64),
    ) -> Step {
        if self.live.contains_key(INVOICE) {
            self.fresh_id("in");
            self.fresh_id("il");
        }
        let invoice = self.invoice(billing_reason, amount, period)?;
        self.replace(INVOICE, invoice);
        let inv = self.id("in");
        if self.live.contains_key(SUBSCRIPTION) {
            self.patch(SUBSCRIPTION, json!({"latest_invoice": inv}))?;
        }
        self.emit("invoice.created", INVOICE)
    }

    pub(super) fn invoice_finalized(&mut self) -> Step {
        self.invoice_count += 1;
        let t = self.now();
        let link = format!(
            "https://invoice.stripe.com/i/acct_1{}/test_{}",
            self.tag,
            ids::alphanumeric(60)
        );
        let charges_now = self.field(INVOICE, "amount_due").as_i64().unwrap_or(0) > 0;
        self.patch(
            INVOICE,
            json!({
                "automatically_finalizes_at": null,
                "effective_at": t,
                "ending_balance": 0,
                "hosted_invoice_url": link,
                "invoice_pdf": format!("{link}/pdf?s=ap"),
                "next_payment_attempt": if charges_now { json!(t) } else { Value::Null },
                "number": format!("{}-{:04}", self.invoice_prefix, self.invoice_count),
                "status": "open",
                "status_transitions": {"finalized_at": t},
            }),
        )?;
        self.emit("invoice.finalized", INVOICE)
    }

    pub(super) fn invoice_paid(&mut self) -> Step {
        let t = self.now();
        let due = self.field(INVOICE, "amount_due");
        let charged = due.as_i64().unwrap_or(0) > 0;
        self.patch(
            INVOICE,
            json!({
                "amount_paid": due,
                "amount_remaining": 0,
                "attempt_count": if charged { 1 } else { 0 },
                "attempted": true,
                "next_payment_attempt": null,
                "status": "paid",
                "status_transitions": {"paid_at": t},
            }),
        )?;
        self.emit("invoice.paid", INVOICE)?;
        self.emit("invoice.payment_succeeded", INVOICE)
    }

    pub(super) fn invoice_failed(&mut self) -> Step {
        let t = self.now();
        self.patch(
            INVOICE,
            json!({"attempt_count": 1, "attempted": true, "next_payment_attempt": t + 3 * DAY, "status": "open"}),
        )?;
        self.emit("invoice.payment_failed", INVOICE)
    }

    /// A new subscription: `customer.created` → `customer.subscription.created` →
    /// `invoice.created` → `invoice.finalized` → `invoice.paid` → `invoice.payment_succeeded`.
    pub(super) fn subscribe(&mut self, start: Start) -> Step {
        self.customer_created()?;
        self.api();
        self.ensure(SUBSCRIPTION)?;
        let t = self.now();
        let amount = if start == Start::Paid {
            self.seeds.amount
        } else {
            let trial_end = t + 14 * DAY;
            let item = self.subscription_item(1, (t, trial_end), t)?;
            let (pm, behavior) = match start {
                Start::TrialPausing => (Value::Null, "pause"),
                _ => (json!(self.id("pm")), "create_invoice"),
            };
            self.patch(
                SUBSCRIPTION,
                json!({
                    "default_payment_method": pm,
                    "items": {"data": [item]},
                    "status": "trialing",
                    "trial_end": trial_end,
                    "trial_settings": {"end_behavior": {"missing_payment_method": behavior}},
                    "trial_start": t,
                }),
            )?;
            0
        };
        self.emit("customer.subscription.created", SUBSCRIPTION)?;
        self.invoice_created("subscription_create", amount, (t, t))?;
        self.invoice_finalized()?;
        self.invoice_paid()
    }

    /// … → `customer.subscription.updated`: set to cancel at the period's end.
    pub(super) fn cancel_at_period_end(&mut self) -> Step {
        self.subscribe(Start::Paid)?;
        self.api();
        let t = self.now();
        let end = self
            .field(SUBSCRIPTION, "items")
            .pointer("/data/0/current_period_end")
            .cloned();
        self.patch(
            SUBSCRIPTION,
            json!({"cancel_at": end, "cancel_at_period_end": true, "canceled_at": t, "cancellation_details": {"reason": "cancellation_requested"}}),
        )?;
        self.emit("customer.subscription.updated", SUBSCRIPTION)
    }

    /// … → `customer.subscription.deleted`: canceled at once.
    pub(super) fn cancel_now(&mut self) -> Step {
        self.subscribe(Start::Paid)?;
        self.api();
        let t = self.now();
        self.patch(
            SUBSCRIPTION,
            json!({"canceled_at": t, "cancellation_details": {"reason": "cancellation_requested"}, "ended_at": t, "status": "canceled"}),
        )?;
        self.emit("customer.subscription.deleted", SUBSCRIPTION)
    }

    /// A trial: … → `customer.subscription.trial_will_end` (three days before it ends).
    pub(super) fn trial_will_end(&mut self, start: Start) -> Step {
        self.subscribe(start)?;
        self.auto();
        self.emit("customer.subscription.trial_will_end", SUBSCRIPTION)
    }

    /// A trial without a payment method ends: … → `customer.subscription.updated` → `customer.subscription.paused`.
    pub(super) fn pause(&mut self) -> Step {
        self.trial_will_end(Start::TrialPausing)?;
        self.auto();
        self.patch(SUBSCRIPTION, json!({"status": "paused"}))?;
        self.emit("customer.subscription.updated", SUBSCRIPTION)?;
        self.emit("customer.subscription.paused", SUBSCRIPTION)
    }

    /// The customer adds a card and resumes: … → `customer.subscription.resumed` → a paid invoice.
    pub(super) fn resume(&mut self) -> Step {
        self.pause()?;
        self.api();
        let t = self.now();
        let period = (t, add_months(t, 1));
        let item = self.subscription_item(
            1,
            period,
            self.field(SUBSCRIPTION, "created").as_i64().unwrap_or(t),
        )?;
        let pm = self.id("pm");
        self.patch(
            SUBSCRIPTION,
            json!({"billing_cycle_anchor": t, "default_payment_method": pm, "items": {"data": [item]}, "status": "active"}),
        )?;
        self.emit("customer.subscription.resumed", SUBSCRIPTION)?;
        self.invoice_created("subscription_update", self.seeds.amount, (t, t))?;
        self.invoice_finalized()?;
        self.invoice_paid()
    }

    /// An upgrade to two seats with `payment_behavior=pending_if_incomplete`:
    /// applied once its invoice is paid, or expired when it is not.
    pub(super) fn pending_update(&mut self, paid: bool) -> Step {
        self.subscribe(Start::Paid)?;
        self.api();
        let t = self.now();
        let (si, price) = (self.id("si"), self.id("price"));
        self.patch(
            SUBSCRIPTION,
            json!({"pending_update": {
                "billing_cycle_anchor": null,
                "expires_at": t + 23 * 3600,
                "subscription_items": [{"id": si, "price": price, "quantity": 2}],
                "trial_end": null,
                "trial_from_plan": null,
            }}),
        )?;
        self.invoice_created("subscription_update", self.seeds.amount, (t, t))?;
        self.invoice_finalized()?;
        if paid {
            self.invoice_paid()?;
            let period = self.field(SUBSCRIPTION, "items");
            let period = (
                period
                    .pointer("/data/0/current_period_start")
                    .and_then(Value::as_i64)
                    .unwrap_or(t),
                period
                    .pointer("/data/0/current_period_end")
                    .and_then(Value::as_i64)
                    .unwrap_or(t),
            );
            let created = self.field(SUBSCRIPTION, "created").as_i64().unwrap_or(t);
            let item = self.subscription_item(2, period, created)?;
            self.patch(
                SUBSCRIPTION,
                json!({"items": {"data": [item]}, "pending_update": null}),
            )?;
            self.emit("customer.subscription.updated", SUBSCRIPTION)?;
            self.emit("customer.subscription.pending_update_applied", SUBSCRIPTION)
        } else {
            self.auto();
            self.invoice_failed()?;
            self.patch(SUBSCRIPTION, json!({"pending_update": null}))?;
            self.emit("customer.subscription.pending_update_expired", SUBSCRIPTION)
        }
    }

    /// A subscription started a month ago, renewing now (no events for its start).
    pub(super) fn renewing_subscription(&mut self) -> Result<(i64, i64), SampleError> {
        self.ensure(CUSTOMER)?;
        self.ensure(SUBSCRIPTION)?;
        let t = self.now();
        let started = add_months(t, -1);
        let item = self.subscription_item(1, (t, add_months(t, 1)), started)?;
        self.patch(
            CUSTOMER,
            json!({"created": started, "currency": self.seeds.currency}),
        )?;
        self.patch(
            SUBSCRIPTION,
            json!({"billing_cycle_anchor": started, "created": started, "items": {"data": [item]}, "start_date": started}),
        )?;
        let snapshot = self.live.get(SUBSCRIPTION).cloned().unwrap_or(Value::Null);
        self.last_snapshot.insert(SUBSCRIPTION, snapshot);
        self.invoice_count = 1;
        self.auto();
        Ok((started, t))
    }

    /// `invoice.created` for a renewal (draft, finalized an hour later).
    pub(super) fn renewal_invoice(&mut self) -> Step {
        let period = self.renewing_subscription()?;
        self.invoice_created("subscription_cycle", self.seeds.amount, period)
    }

    pub(super) fn renewal_finalized(&mut self) -> Step {
        self.renewal_invoice()?;
        self.invoice_finalized()
    }

    /// `invoice.created` → `invoice.finalized` → `invoice.paid` → `invoice.payment_succeeded`.
    pub(super) fn renewal_paid(&mut self) -> Step {
        self.renewal_finalized()?;
        self.invoice_paid()
    }

    /// … → `invoice.payment_failed` → `customer.subscription.updated` (`past_due`).
    pub(super) fn renewal_failed(&mut self) -> Step {
        self.renewal_finalized()?;
        self.invoice_failed()?;
        self.patch(SUBSCRIPTION, json!({"status": "past_due"}))?;
        self.emit("customer.subscription.updated", SUBSCRIPTION)
    }

    /// … → `invoice.payment_action_required` (the renewal needs 3-D Secure).
    pub(super) fn renewal_action_required(&mut self) -> Step {
        self.renewal_finalized()?;
        self.patch(
            INVOICE,
            json!({"attempt_count": 1, "attempted": true, "next_payment_attempt": null}),
        )?;
        self.emit("invoice.payment_action_required", INVOICE)
    }

    /// `invoice.upcoming`, a few days before renewal: a preview, so it has no `id`.
    pub(super) fn upcoming_invoice(&mut self) -> Step {
        self.ensure(CUSTOMER)?;
        self.ensure(SUBSCRIPTION)?;
        self.auto();
        let renews = self.now() + 3 * DAY;
        let started = add_months(renews, -1);
        let item = self.subscription_item(1, (started, renews), started)?;
        self.patch(
            CUSTOMER,
            json!({"created": started, "currency": self.seeds.currency}),
        )?;
        self.patch(
            SUBSCRIPTION,
            json!({"billing_cycle_anchor": started, "created": started, "items": {"data": [item]}, "start_date": started}),
        )?;
        let mut preview = self.invoice("upcoming", self.seeds.amount, (started, renews))?;
        let sub = self.id("sub");
        merge(
            &mut preview,
            json!({"automatically_finalizes_at": null, "created": renews, "lines": {"url": format!("/v1/invoices/upcoming/lines?subscription={sub}")}, "next_payment_attempt": renews + 3600}),
        );
        if let Some(period) = preview.pointer_mut("/lines/data/0/period") {
            *period = json!({"end": add_months(renews, 1), "start": renews});
        }
        if let Some(map) = preview.as_object_mut() {
            map.remove("id");
        }
        self.replace(INVOICE, preview);
        self.emit("invoice.upcoming", INVOICE)
    }

    /// … → `invoice.voided`.
    pub(super) fn renewal_voided(&mut self) -> Step {
        self.renewal_finalized()?;
        self.api();
        let t = self.now();
        self.patch(
            INVOICE,
            json!({"auto_advance": false, "next_payment_attempt": null, "status": "void", "status_transitions": {"voided_at": t}}),
        )?;
        self.emit("invoice.voided", INVOICE)
    }

    /// Retries exhausted: … → `invoice.payment_failed` → `invoice.marked_uncollectible`.
    pub(super) fn renewal_uncollectible(&mut self) -> Step {
        self.renewal_finalized()?;
        self.invoice_failed()?;
        let t = self.now();
        self.patch(
            INVOICE,
            json!({"auto_advance": false, "next_payment_attempt": null, "status": "uncollectible", "status_transitions": {"marked_uncollectible_at": t}}),
        )?;
        self.emit("invoice.marked_uncollectible", INVOICE)
    }
}
