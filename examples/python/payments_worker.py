"""The issue's example, runnable: a Python publisher and subscriber hosted by a worker.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/payments_worker.py
"""
import asyncio
import logging
from typing import Any

import herald


class PaymentEventPublisher(herald.BasePublisher):
    publisher_name = "payment_events"

    def publishes_for(self) -> list[str]:
        return ["process_payment", "refund_payment"]

    async def transform_payload(self, ctx: herald.StepEventContext) -> dict[str, Any]:
        return {"payment_id": ctx.result.get("payment_id"), "amount": ctx.result.get("amount")}

    async def before_publish(self, ctx: herald.StepEventContext) -> bool:
        return True  # False skips the event quietly

    async def after_publish(self, ctx: herald.StepEventContext, event: herald.DomainEvent) -> None:
        print(f"published {event.event_name} {event.payload}")

    async def on_publish_error(self, ctx: herald.StepEventContext, error: BaseException) -> None:
        print(f"publishing {ctx.event_name} failed: {error!r}")

    async def additional_metadata(self, ctx: herald.StepEventContext) -> dict[str, Any]:
        return {"payment_processor": "stripe"}

    def should_publish(self, ctx: herald.StepEventContext) -> bool:
        return True


class AuditLoggingSubscriber(herald.BaseSubscriber):
    subscriber_name = "audit_logger"

    def subscribes_to(self) -> list[str]:
        return ["payment.*", "order.completed"]

    async def handle(self, event: herald.DomainEvent) -> herald.SubscriberResult:
        print(f"audit: {event.event_name} {event.payload} processor={event.metadata['payment_processor']}")
        return herald.SubscriberResult(success=True)

    async def before_handle(self, event: herald.DomainEvent) -> bool:
        return True  # False skips handle/after_handle

    async def after_handle(self, event: herald.DomainEvent, result: herald.SubscriberResult) -> None:
        pass

    async def on_handle_error(self, event: herald.DomainEvent, error: BaseException) -> None:
        print(f"audit failed on {event.event_name}: {error!r}")


pub_registry = herald.PublisherRegistry.instance()  # process-wide default
pub_registry.register(PaymentEventPublisher)  # a class (instantiated) or an instance
print("publisher for process_payment:", pub_registry.get_for_step("process_payment").publisher_name)
sub_registry = herald.SubscriberRegistry.instance()
sub_registry.register(AuditLoggingSubscriber)

worker = herald.Worker(
    name="payments-worker",
    steps=[{"name": "process_payment",
            "publishes_events": [{"name": "payment.processed", "condition": "success"},
                                 {"name": "payment.failed", "condition": "permanent_failure"}]}],
)


@worker.on_startup
async def startup() -> None:
    print("startup")


@worker.on_shutdown
async def shutdown() -> None:
    print("shutdown")


@worker.on_success
async def on_success(completion: herald.StepCompletion) -> None:
    print(f"step {completion.step_name} published")


@worker.on_error
async def on_error(completion: herald.StepCompletion, error: BaseException) -> None:
    print(f"step {completion.step_name} failed to publish: {error!r}")


@worker.on_worker_startup
async def per_worker_startup() -> None:
    print("dispatcher thread started")


async def main() -> None:
    async with worker:  # start() ... stop() with drain
        worker.complete_step({"step_name": "process_payment", "success": True,
                              "result": {"payment_id": "pay_123", "amount": 42.5}})
        worker.complete_step({"step_name": "process_payment", "success": False, "retryable": False,
                              "error": {"message": "card declined", "error_type": "CardError"},
                              "result": {"payment_id": "pay_124", "amount": 10}})
    print(worker.state.name, worker.status()["subscribers"]["audit_logger"]["handled"], "events handled")
    # or: await worker.run()  -- until SIGTERM/SIGINT, then graceful stop


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
