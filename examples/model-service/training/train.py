"""Train the two churn models and register them (uses OPSML_TRACKING_URI).

    python examples/model-service/training/train.py --probe probe.json

registers model/demo/churn-sklearn (with an ONNX export: the `onnx` extra) and
model/demo/churn-torch (a new minor version each run), and writes a few inputs with the
trained models' own predictions to `--probe`, to check a served model against.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from nets import ChurnNet
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from client import CardRegistry, DataCard, ModelCard

FEATURES = ["tenure", "monthly_spend", "support_calls", "discount"]


def dataset(n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, len(FEATURES))).astype(np.float32)
    y = ((X[:, 2] - X[:, 0] + 0.3 * X[:, 1] + rng.normal(0, 0.1, n)) > 0.1).astype(np.int64)
    return X, y


def train_torch(X: np.ndarray, y: np.ndarray) -> ChurnNet:
    torch.manual_seed(0)
    net = ChurnNet(n_features=X.shape[1], hidden=16)
    xs, ys = torch.from_numpy(X), torch.from_numpy(y).float()
    for _ in range(300):  # plain gradient descent: small data, no optimizer needed
        net.zero_grad()
        torch.nn.functional.binary_cross_entropy(net(xs), ys).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.5 * p.grad
    return net.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--space", default="demo")
    parser.add_argument("--probe", help="write probe inputs and the models' predictions here")
    args = parser.parse_args(argv)

    X, y = dataset()
    data = CardRegistry("data").register_card(DataCard(space=args.space, name="churn", data=X))
    models = CardRegistry("model")

    sk = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    sk_card = models.register_card(
        ModelCard(
            space=args.space, name="churn-sklearn", model=sk, sample_data=X[:8],
            datacard_uid=data.uid, tags={"features": ",".join(FEATURES)}, export_onnx=True,
        )
    )  # fmt: skip
    net = train_torch(X, y)
    torch_card = models.register_card(
        ModelCard(
            space=args.space, name="churn-torch", model=net, sample_data=X[:8],
            model_init_kwargs={"n_features": X.shape[1], "hidden": 16}, datacard_uid=data.uid,
            tags={"features": ",".join(FEATURES)},
        )
    )  # fmt: skip
    for card in (sk_card, torch_card):
        print(f"registered model/{card.space}/{card.name} {card.version} uid={card.uid}")

    if args.probe:
        probe = X[-5:]
        with torch.no_grad():
            torch_pred = net(torch.from_numpy(probe)).tolist()
        rows = probe.tolist()
        out = {
            "churn-sklearn": {"instances": rows, "predictions": sk.predict(probe).tolist()},
            "churn-torch": {"instances": rows, "predictions": torch_pred},
        }
        with open(args.probe, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
