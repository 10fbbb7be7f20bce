ALTER TABLE user_actions ADD COLUMN acted_at {{.Timestamp}}
