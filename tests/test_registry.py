import pytest

from embedfleet.errors import InvalidArgument, NotFound
from embedfleet.registry import DEFAULT_MODELS, ModelRegistry, ModelRole, ModelSpec


def _spec(name: str, role: ModelRole, dims: int = 64, mrl: tuple[int, ...] = ()) -> ModelSpec:
    return ModelSpec(name=name, role=role, source=f"/models/{name}", dimensions=dims, matryoshka_dimensions=mrl)


def test_resolve_by_name_role_and_default() -> None:
    registry = ModelRegistry([_spec("big", ModelRole.TEACHER), _spec("small", ModelRole.STUDENT)], default="small")
    assert registry.resolve("").name == "small"
    assert registry.resolve("big").name == "big"
    assert registry.resolve("teacher").name == "big"
    with pytest.raises(NotFound, match="registered models: big, small"):
        registry.resolve("huge")


def test_output_dimensions() -> None:
    spec = _spec("m", ModelRole.MRL, dims=64, mrl=(16, 32))
    assert spec.output_dimensions(0) == 64
    assert spec.output_dimensions(64) == 64
    assert spec.output_dimensions(16) == 16
    with pytest.raises(InvalidArgument, match="supported: 16, 32, 64"):
        spec.output_dimensions(20)


def test_invalid_registry_entries() -> None:
    with pytest.raises(ValueError, match="matryoshka_dimensions"):
        _spec("m", ModelRole.MRL, dims=64, mrl=(128,))
    with pytest.raises(ValueError, match="same name"):
        ModelRegistry([_spec("a", ModelRole.TEACHER), _spec("a", ModelRole.STUDENT)])
    with pytest.raises(ValueError, match="not in the registry"):
        ModelRegistry([_spec("a", ModelRole.TEACHER)], default="b")


def test_default_model_comes_from_the_installed_package() -> None:
    path = DEFAULT_MODELS[0].local_path()
    assert path is not None and (path / "config.json").is_file()


def test_missing_package_is_a_clear_error() -> None:
    spec = ModelSpec(name="x", role=ModelRole.TEACHER, source="package:not_installed_pkg/model", dimensions=8)
    with pytest.raises(NotFound, match="pip install not-installed-pkg"):
        spec.local_path()
