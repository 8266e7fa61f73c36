"""Two-step pipelines compiled to YAML for the runner tests (subprocess and docker).

No `from __future__ import annotations` here: kfp reads the component annotations.

Their components are lightweight Python components on the esteira image: kfp serialises
the function source into the YAML, so the image runs them without knowing this module.
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output

from esteira.config import ImageSettings

IMAGE = ImageSettings().reference


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def copy_rows(source: str, rows: Output[Dataset]) -> int:
    """Read a Parquet file from a mounted path; write it out as a Dataset."""
    import pandas as pd

    frame = pd.read_parquet(source)
    frame.to_parquet(rows.path)
    return len(frame)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def store_rows(rows: Input[Dataset], store: str) -> str:
    """Write into a mounted, writable directory (the local registry's place in a real run)."""
    import os
    from pathlib import Path

    import pandas as pd

    out = Path(store) / "rows.csv"
    pd.read_parquet(rows.path).to_csv(out, index=False)
    return f"{out} uid={os.getuid()}"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def forgets_outputs(rows: Output[Dataset]) -> int:
    """Exits 0 before kfp's executor writes anything."""
    import os

    print("leaving without writing outputs", flush=True)
    os._exit(0)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def count(n: int) -> int:
    return n


@dsl.pipeline(name="tiny-copy")
def tiny_copy(source: str, store: str) -> str:
    copied = copy_rows(source=source)
    return store_rows(rows=copied.outputs["rows"], store=store).output


@dsl.pipeline(name="tiny-forgets")
def tiny_forgets() -> int:
    first = forgets_outputs()
    return count(n=first.outputs["Output"]).output


def compile_to(pipeline, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, package_path=str(path))
    return path
