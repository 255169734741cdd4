"""The build's outputs read and written without Beam: manifest, audit, report."""
