"""Writing a data frame where a data source points (demo data, periods for monitoring).

The generators themselves belong to their use cases (``feature_repo/<use case>/generator.py``,
loaded by ``esteira/usecase.py``).
"""

from __future__ import annotations

import pandas as pd


def write_frame(frame: pd.DataFrame, path: str) -> None:
    """Parquet or CSV by extension, written atomically."""
    import os
    import tempfile
    from pathlib import Path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=target.suffix)
    os.close(fd)
    if target.suffix == ".csv":
        frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, target)


write_fleet = write_frame  # the name callers have used
