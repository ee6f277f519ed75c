"""GitHub glue (the only githubkit user besides webhook parsing): clients, snapshots, publishing."""
