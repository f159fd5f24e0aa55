"""`taskctl capacity`: what a steady submit rate needs from AWS, from a stack's settings and the
documented quotas in `bench/quotas.json` (`model` is the arithmetic, `cli` the command)."""
