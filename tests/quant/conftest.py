import pytest


@pytest.fixture(scope="session")
def quantized(tiny_model_dir, tmp_path_factory):
    """quantized(scheme, quarot, kv_c8) -> a folder written by `m2serve quantize` from the tiny model (cached)."""
    from m2serve.cli.main import main

    made = {}

    def make(scheme: str, quarot: bool = False, kv_c8: bool = False):
        key = (scheme, quarot, kv_c8)
        if key not in made:
            dst = tmp_path_factory.mktemp(f"q-{scheme}-{'rot' if quarot else 'plain'}-{'c8' if kv_c8 else 'fkv'}")
            argv = ["quantize", str(tiny_model_dir), str(dst), "--scheme", scheme, "--num-calib-samples", "8"]
            argv += ["--quarot"] * quarot + ["--kv-c8"] * kv_c8 + ["--skip-validation"]
            assert main(argv) == 0
            made[key] = dst
        return made[key]
    return make
