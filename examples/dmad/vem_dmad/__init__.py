"""vem-plugins adapter for https://github.com/SJLeo/DMAD."""
