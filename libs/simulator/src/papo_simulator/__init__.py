"""A simulated WhatsApp for papo: it plays Evolution API v2 towards papo and shows the chats in a browser."""
