"""The nucleus classifier of §2.4: folds, ResNet-18, class-balanced loader, training loop."""
