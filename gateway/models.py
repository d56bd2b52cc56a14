"""Models: what the registry serves, which workers host each model, and their recorded scores."""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet.gateway import tenancy
from embedfleet.gateway.context import GatewayContext
from embedfleet.registry import ModelSpec


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    version: str
    workers: int
    is_default: bool
    origin: str
    metrics: dict[str, float]


class ModelsCore:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def list(self) -> list[ModelStatus]:
        settings = self.ctx.settings
        workers = self.ctx.store.live_workers()
        registry = self.ctx.registry
        stored = {m.name: m for m in settings.model_store().promoted()} if settings.model_store_dir.is_dir() else {}
        configured = {m.name for m in settings.models}
        statuses = []
        for spec in registry:
            if not tenancy.may_use_model(spec.name, configured):
                continue  # another tenant's promoted model
            versions = [w["models"][spec.name] for w in workers if spec.name in w.get("models", {})]
            statuses.append(
                ModelStatus(
                    spec=spec,
                    version=versions[0] if versions else (spec.revision or spec.checksum),
                    workers=len(versions),
                    is_default=spec.name == registry.default,
                    origin="config" if spec.name in configured else "store",
                    metrics=dict(stored[spec.name].eval_metrics) if spec.name in stored else {},
                )
            )
        return statuses
