//! The dispute processor's sequences: a dispute from creation to its close.

use super::*;

impl Scenario {
    /// A paid charge disputed as fraudulent: … → `charge.dispute.created`.
    pub(super) fn dispute_opened(&mut self) -> Step {
        self.card_payment(Pay::Succeeded)?;
        self.patch(CHARGE, json!({"disputed": true}))?;
        self.auto();
        self.emit("charge.dispute.created", DISPUTE)
    }

    /// … → `charge.dispute.funds_withdrawn` (amount and dispute fee debited).
    pub(super) fn dispute_funds_withdrawn(&mut self) -> Step {
        self.dispute_opened()?;
        let (amount, dp, ch) = (self.seeds.amount, self.id("dp"), self.id("ch"));
        let withdrawal = self.balance_transaction(
            "txn_dp",
            -amount,
            1500,
            dp,
            &format!("Chargeback withdrawal for {ch}"),
            "dispute",
        )?;
        self.patch(DISPUTE, json!({"balance_transactions": [withdrawal]}))?;
        self.emit("charge.dispute.funds_withdrawn", DISPUTE)
    }

    /// … → `charge.dispute.updated`: evidence submitted, now under review.
    pub(super) fn dispute_evidence(&mut self) -> Step {
        self.dispute_funds_withdrawn()?;
        self.api();
        self.patch(
            DISPUTE,
            json!({
                "evidence": {
                    "customer_email_address": "jenny.rosen@example.com",
                    "customer_name": "Jenny Rosen",
                    "product_description": "Payhook Pro, monthly",
                    "uncategorized_text": "The customer signed in and used the service after the payment.",
                },
                "evidence_details": {"has_evidence": true, "submission_count": 1},
                "status": "under_review",
            }),
        )?;
        self.emit("charge.dispute.updated", DISPUTE)
    }

    /// … → `charge.dispute.closed` (`won`, then `charge.dispute.funds_reinstated`; or `lost`).
    pub(super) fn dispute_closed(&mut self) -> Step {
        self.dispute_evidence()?;
        self.auto();
        let status = self
            .seeds
            .dispute_status
            .clone()
            .unwrap_or_else(|| "won".into());
        self.patch(DISPUTE, json!({"status": status}))?;
        self.emit("charge.dispute.closed", DISPUTE)?;
        if status != "won" {
            return Ok(());
        }
        let (amount, dp, ch) = (self.seeds.amount, self.id("dp"), self.id("ch"));
        let reinstated = self.balance_transaction(
            "txn_dp_reversal",
            amount,
            0,
            dp,
            &format!("Chargeback reversal for {ch}"),
            "dispute_reversal",
        )?;
        let mut transactions = self.field(DISPUTE, "balance_transactions");
        if let Some(list) = transactions.as_array_mut() {
            list.push(reinstated);
        }
        self.patch(DISPUTE, json!({"balance_transactions": transactions}))?;
        self.emit("charge.dispute.funds_reinstated", DISPUTE)
    }
}
