"""Order of the examples in the gallery (referenced from conf.py by name)."""

ORDER = [
    "plot_quickstart.py",
    "plot_images.py",
    "plot_custom_perturbation.py",
    "plot_custom_network.py",
    "plot_n_clusters.py",
    "plot_grid_search.py",
    "plot_training_curves.py",
    "plot_callbacks.py",
]


def sort_key(filename):
    """Listed examples first, in ORDER; any others after them, by name."""
    try:
        return (ORDER.index(filename), filename)
    except ValueError:
        return (len(ORDER), filename)
