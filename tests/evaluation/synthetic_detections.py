"""Small detection data sets for the evaluation tests: hand-made boxes and random ones."""

from __future__ import annotations

import torch


def make_target(boxes, labels, difficult=None):
    t = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
    if difficult is not None:
        t["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return t


def make_pred(boxes, labels, scores):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 40.0, 30.0]
FAR = [100.0, 100.0, 110.0, 110.0]


def random_dataset(seed, num_images=12, num_classes=3, difficult_rate=0.2, max_dets=30):
    """Ground truth and noisy detections: jittered copies of boxes, duplicates, random boxes."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(num_images):
        n = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 400
        wh = 10 + torch.rand(n, 2, generator=g) * 120
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, num_classes + 1, (n,), generator=g)
        difficult = torch.rand(n, generator=g) < difficult_rate
        targets.append({"boxes": boxes, "labels": labels, "difficult": difficult})
        # Jittered copies (some good, some poor), some with the wrong label, plus clutter.
        copies = boxes.repeat(2, 1)
        copies = copies + torch.randn(copies.shape, generator=g) * (wh.repeat(2, 2) * 0.15)
        copy_labels = labels.repeat(2)
        flip = torch.rand(copy_labels.shape, generator=g) < 0.15
        copy_labels = torch.where(
            flip, torch.randint(1, num_classes + 1, copy_labels.shape, generator=g), copy_labels
        )
        m = int(torch.randint(0, max_dets - 2 * n + 1, (1,), generator=g))
        cxy = torch.rand(m, 2, generator=g) * 400
        clutter = torch.cat([cxy, cxy + 10 + torch.rand(m, 2, generator=g) * 120], 1)
        det_boxes = torch.cat([copies, clutter])
        det_labels = torch.cat([copy_labels, torch.randint(1, num_classes + 1, (m,), generator=g)])
        # Copies tend to score higher than clutter. Quantised scores, so that ties happen and the
        # sort's stability is exercised.
        scores = torch.cat(
            [0.3 + 0.7 * torch.rand(2 * n, generator=g), 0.8 * torch.rand(m, generator=g)]
        )
        scores = torch.round(scores * 20) / 20
        preds.append({"boxes": det_boxes, "labels": det_labels, "scores": scores})
    return preds, targets
