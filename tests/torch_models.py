"""Small real architectures for the PyTorch-backend tests (torchvision is not used):
a ResNet-style CNN with BatchNorm2d and an MLP with BatchNorm1d."""

import torch
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3 → BN → ReLU → conv3x3 → BN, plus the input (1x1 conv + BN when the shape
    changes), then ReLU: the block of He et al. (2016)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet(num_classes=10, width=8, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, width, 3, 1, 1, bias=True),       # a conv with bias before a BN, too
        nn.BatchNorm2d(width), nn.ReLU(),
        BasicBlock(width, width, 1),
        BasicBlock(width, 2 * width, 2),              # stride-2 downsampling, 1x1 projection
        BasicBlock(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    ).to(dtype)
    with torch.no_grad():                             # non-trivial affine parameters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def mlp(num_in=20, num_classes=5, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(num_in, 64), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, 32, bias=False), nn.BatchNorm1d(32, momentum=None), nn.ReLU(),
        nn.Linear(32, num_classes),
    ).to(dtype)
    return model


def batches(kind, steps, dtype=torch.float64, seed=1):
    """(input, target) pairs whose statistics drift from step to step."""
    g = torch.Generator().manual_seed(seed)
    shape = (8, 3, 16, 16) if kind == "resnet" else (32, 20)
    classes = 10 if kind == "resnet" else 5
    return [(torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) * (1 + 0.3 * k) + 0.5 * k,
             torch.randint(0, classes, (shape[0],), generator=g)) for k in range(steps)]
