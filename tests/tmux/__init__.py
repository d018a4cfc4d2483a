"""The app in a real tmux pane: keys and screens as a user over SSH sees them."""
