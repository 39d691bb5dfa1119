//! The payout processor's sequences: payouts and connected accounts.

use super::*;

impl Scenario {
    /// `payout.created`: automatic (daily schedule) or, when `manual`, by API.
    pub(super) fn payout_created(&mut self, manual: bool) -> Step {
        if manual {
            self.api();
            self.patch(
                PAYOUT,
                json!({"automatic": false, "reconciliation_status": "not_applicable"}),
            )?;
        } else {
            self.auto();
        }
        self.emit("payout.created", PAYOUT)
    }

    /// … → `payout.updated` (`pending` → `in_transit`).
    pub(super) fn payout_in_transit(&mut self) -> Step {
        self.payout_created(false)?;
        self.patch(PAYOUT, json!({"status": "in_transit"}))?;
        self.emit("payout.updated", PAYOUT)
    }

    /// … → `payout.paid`.
    pub(super) fn payout_paid(&mut self) -> Step {
        self.payout_in_transit()?;
        self.patch(
            PAYOUT,
            json!({"status": "paid", "trace_id": {"status": "supported", "value": ids::digits(15)}}),
        )?;
        self.emit("payout.paid", PAYOUT)
    }

    /// … → `payout.failed` (the bank account was closed; funds return to the balance).
    pub(super) fn payout_failed(&mut self) -> Step {
        self.payout_in_transit()?;
        let txn = self.id("txn_po_failure");
        self.patch(
            PAYOUT,
            json!({
                "failure_balance_transaction": txn,
                "failure_code": "account_closed",
                "failure_message": "The bank account has been closed.",
                "status": "failed",
                "trace_id": {"status": "unsupported", "value": null},
            }),
        )?;
        self.emit("payout.failed", PAYOUT)
    }

    /// A manual payout canceled before it left: `payout.created` → `payout.canceled`.
    pub(super) fn payout_canceled(&mut self) -> Step {
        self.payout_created(true)?;
        self.api();
        self.patch(PAYOUT, json!({"status": "canceled"}))?;
        self.emit("payout.canceled", PAYOUT)
    }

    /// … → `payout.paid` → `payout.reconciliation_completed`.
    pub(super) fn payout_reconciled(&mut self) -> Step {
        self.payout_paid()?;
        self.patch(PAYOUT, json!({"reconciliation_status": "completed"}))?;
        self.emit("payout.reconciliation_completed", PAYOUT)
    }

    /// A connected account's verification deadline passes: charges and payouts disabled.
    pub(super) fn account_restricted(&mut self) -> Step {
        self.ensure(ACCOUNT)?;
        self.auto();
        let due = json!(["individual.verification.document"]);
        self.patch(
            ACCOUNT,
            json!({
                "capabilities": {"card_payments": "inactive", "transfers": "inactive"},
                "charges_enabled": false,
                "payouts_enabled": false,
                "requirements": {"currently_due": due, "disabled_reason": "requirements.past_due", "eventually_due": due, "past_due": due},
            }),
        )?;
        self.emit("account.updated", ACCOUNT)
    }

    pub(super) fn external_account_created(&mut self) -> Step {
        self.api();
        self.emit("account.external_account.created", BANK_ACCOUNT)
    }

    /// … → `account.external_account.updated` (validated by a first payout).
    pub(super) fn external_account_validated(&mut self) -> Step {
        self.external_account_created()?;
        self.auto();
        self.patch(BANK_ACCOUNT, json!({"status": "validated"}))?;
        self.emit("account.external_account.updated", BANK_ACCOUNT)
    }

    /// … → `account.external_account.deleted`.
    pub(super) fn external_account_deleted(&mut self) -> Step {
        self.external_account_created()?;
        self.api();
        self.emit("account.external_account.deleted", BANK_ACCOUNT)
    }
}
