"""``python -m lit_kd`` runs the ``lit-kd`` command line."""

from lit_kd.cli import main

main()
