"""BAQ Suite core: data, envs, buffers, networks, training loop, tracking, runner, CLI."""
