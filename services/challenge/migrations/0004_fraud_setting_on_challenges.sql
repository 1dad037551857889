-- The provider's fraud setting at the time of the challenge (the gateway
-- owns providers): a fraud report on this challenge blocks the user if set.
ALTER TABLE challenges ADD COLUMN block_user_on_fraud BOOLEAN NOT NULL DEFAULT TRUE;
