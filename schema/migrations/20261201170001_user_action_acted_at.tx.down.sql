ALTER TABLE user_actions DROP COLUMN acted_at
