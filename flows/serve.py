"""Serve every flow of this project as a deployment: `python -m flows.serve`."""

from __future__ import annotations

from prefect import serve

from flows.feedback_analysis import customer_feedback
from flows.supply_chain_delay import supply_chain_delay

__all__ = ["build_deployments", "main"]


def build_deployments() -> list:  # type: ignore[type-arg]
    """Return the deployments served locally, named like those in prefect.yaml."""
    return [
        supply_chain_delay.to_deployment(
            name="supply-chain-delay",
            description="Supplier delay notices from webhooks.",
            tags=["webhook"],
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
