"""PICACO (Algorithm 1) as pure steps over typed records: estimators, pools, Eq. (4), E- and M-steps."""
