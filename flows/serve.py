"""Serve every flow of this project as a deployment: `python -m flows.serve`."""

from __future__ import annotations

from prefect import serve

from flows.feedback_analysis import customer_feedback
from flows.replay_failed_events import replay_failed_events
from flows.supply_chain_delay import supply_chain_delay

__all__ = ["NIGHTLY_REPLAY_CRON", "build_deployments", "main"]

# Same schedule as in prefect.yaml: every night at 02:00 UTC.
NIGHTLY_REPLAY_CRON = "0 2 * * *"


def build_deployments() -> list:  # type: ignore[type-arg]
    """Return the deployments served locally, named like those in prefect.yaml."""
    return [
        supply_chain_delay.to_deployment(
            name="supply-chain-delay",
            description="Supplier delay notices from webhooks.",
            tags=["webhook"],
        ),
        replay_failed_events.to_deployment(
            name="replay-failed-events",
            description="Nightly replay of webhook events whose runs failed or crashed.",
            tags=["webhook", "maintenance"],
            cron=NIGHTLY_REPLAY_CRON,
        ),
        customer_feedback.to_deployment(
            name="customer-feedback",
            description="Customer feedback from product pages: ticket, Feishu, MySQL.",
            tags=["webhook"],
        ),
    ]


def main() -> None:
    serve(*build_deployments())


if __name__ == "__main__":
    main()
