"""What every part of the library leans on: whole-file writes that a crash cannot cut in half
(:mod:`~transfer_lib.utils.atomic`), the errors meant for the user
(:mod:`~transfer_lib.utils.errors`) and the CPU kernels a run uses, with the provenance every
result records (:mod:`~transfer_lib.utils.kernels`)."""
