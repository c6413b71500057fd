"""The runtimes around the manager: trusted (trts: dispatcher, init, the manager's
interfaces) and untrusted (urts: the ocall services the Intel SDK provides)."""
