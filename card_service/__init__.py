"""The card side of the platform (月卡平台): cards, lots, credentials, membership checks and the
card list pushed to lots."""
