"""The staff's side: operations on a running portald, and the control socket that serves them."""
