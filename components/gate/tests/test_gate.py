"""The gate's rule: every configured threshold, in the direction of its metric."""

from esteira.evaluation import check_thresholds


def test_thresholds_respect_direction():
    assert check_thresholds({"rmse": 2.0}, {"rmse": 1.0}) == ["rmse 2.0000 > maximum 1.0"]
    assert check_thresholds({"rmse": 0.5, "r2": 0.9}, {"rmse": 1.0, "r2": 0.5}) == []
    assert "not computed" in check_thresholds({"rmse": 1.0}, {"roc_auc": 0.8})[0]
