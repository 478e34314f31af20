"""Named settings of the paper, as data. A preset fills every field it names; `-P` overrides win.

Table 7 (Appendix D): the settings used to verify the eigenspace theory. Fields a table leaves
unstated (weight decay, schedule) take the config defaults: no weight decay, constant rate.
"""

TABLE7 = {
    # Noisy-MNIST / random features: 5000 ReLU features, depth 1, 25% uniform label noise.
    "noisy_mnist_rf": dict(
        dataset="mnist5k", train_size=128, label_noise=0.25, arch="random_features", width=5000,
        depth=1, batch_size=128, epochs=40, lr=1e-3, optimizer="adam", distill_weight=1.0,
        temperature=4.0,
    ),
    # MNIST / MLP: width 1000, depth 2.
    "mnist_mlp": dict(
        dataset="mnist5k", train_size=128, label_noise=0.0, arch="mlp", width=1000, depth=2,
        batch_size=32, epochs=20, lr=1e-4, optimizer="adam", distill_weight=1.0, temperature=4.0,
    ),
    # CIFAR10 / CNN: width 100, kernel 6x6, max-pool 2x2, depth 3 (needs CIFAR-10 on disk).
    "cifar10_cnn": dict(
        dataset="cifar10", train_size=8192, label_noise=0.0, arch="cnn", width=100, depth=3,
        batch_size=128, epochs=40, lr=1e-4, optimizer="adam", distill_weight=1.0, temperature=4.0,
    ),
}

PRESETS: dict[str, dict] = {**TABLE7}
