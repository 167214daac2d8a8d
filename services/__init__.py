"""Business rules as keyword-only functions over a Session. Only services write business state."""
